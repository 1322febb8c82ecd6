//! Start order of a project's services from `depends_on`: dependencies first, ties broken by name so the order
//! is stable; a cycle is an error naming it (`a -> b -> a`).

use std::collections::BTreeMap;

use super::model::Project;

/// Services in an order where every service comes after what it depends on. `Err` holds a cycle, first name
/// repeated at the end.
pub fn start_order(project: &Project) -> Result<Vec<String>, Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        name: &str,
        project: &Project,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
        out: &mut Vec<String>,
    ) -> Result<(), Vec<String>> {
        match marks.get(name) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|s| s == name).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(name.to_string());
                return Err(cycle);
            }
            None => {}
        }
        let Some(service) = project.services.get(name) else { return Ok(()) };
        marks.insert(name.to_string(), Mark::Visiting);
        stack.push(name.to_string());
        for dep in service.depends_on.keys() {
            visit(dep, project, marks, stack, out)?;
        }
        stack.pop();
        marks.insert(name.to_string(), Mark::Done);
        out.push(name.to_string());
        Ok(())
    }
    let mut marks = BTreeMap::new();
    let mut out = Vec::new();
    for name in project.services.keys() {
        visit(name, project, &mut marks, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

/// The named services plus everything they depend on, transitively (what `up web` starts).
pub fn with_dependencies(project: &Project, names: &[String]) -> Vec<String> {
    let mut wanted: Vec<String> = Vec::new();
    let mut todo: Vec<String> = names.to_vec();
    while let Some(name) = todo.pop() {
        if wanted.contains(&name) {
            continue;
        }
        if let Some(s) = project.services.get(&name) {
            todo.extend(s.depends_on.keys().cloned());
        }
        wanted.push(name);
    }
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::model::{Dependency, Service};

    fn project(edges: &[(&str, &[&str])]) -> Project {
        let mut p = Project::default();
        for (name, deps) in edges {
            let mut s = Service { name: name.to_string(), ..Service::default() };
            for d in *deps {
                s.depends_on.insert(d.to_string(), Dependency::default());
            }
            p.services.insert(name.to_string(), s);
        }
        p
    }

    #[test]
    fn dependencies_come_first() {
        let p = project(&[("web", &["db", "cache"]), ("db", &[]), ("cache", &["db"]), ("worker", &["cache"])]);
        assert_eq!(start_order(&p).unwrap(), ["db", "cache", "web", "worker"]);
    }

    #[test]
    fn cycles_are_named() {
        let p = project(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])]);
        assert_eq!(start_order(&p).unwrap_err(), ["a", "b", "c", "a"]);
    }

    #[test]
    fn with_dependencies_is_transitive() {
        let p = project(&[("web", &["cache"]), ("cache", &["db"]), ("db", &[]), ("other", &[])]);
        let mut got = with_dependencies(&p, &["web".to_string()]);
        got.sort();
        assert_eq!(got, ["cache", "db", "web"]);
    }
}

//! Instruction flags (`COPY --from=builder --chown=1000 …`), with BuildKit's `BFlags` rules: `--name=value`,
//! booleans as `--link`, `--link=true|false`, a flag given twice is an error unless it may repeat (`--mount`,
//! `--exclude`), an unknown flag is an error with a suggestion, and `--` ends the flags.

use std::collections::BTreeMap;

use crate::build::error::suggest;

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    String,
    /// May repeat; every value is kept.
    Strings,
}

/// The flags an instruction accepts and the values it was given.
pub(crate) struct Flags {
    values: BTreeMap<&'static str, Vec<String>>,
}

impl Flags {
    /// Parses `args` (the words starting with `--` before the instruction's arguments) against `accepted`.
    pub(crate) fn parse(args: &[String], accepted: &'static [(&'static str, Kind)]) -> Result<Self, String> {
        let mut values: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
        for arg in args {
            if arg == "--" {
                break;
            }
            let Some(body) = arg.strip_prefix("--") else {
                return Err(format!("arg should start with -- : {arg}"));
            };
            let (name, value) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (body, None),
            };
            let Some(&(known, kind)) = accepted.iter().find(|(n, _)| *n == name) else {
                let mut message = format!("unknown flag: --{name}");
                match suggest(name, accepted.iter().map(|(n, _)| *n), true) {
                    Some(s) => message.push_str(&format!(" (did you mean {s}?)")),
                    None if accepted.is_empty() => message.push_str(" (this instruction takes no flags)"),
                    None => {
                        let names: Vec<String> = accepted.iter().map(|(n, _)| format!("--{n}")).collect();
                        message.push_str(&format!(" (accepted: {})", names.join(", ")));
                    }
                }
                return Err(message);
            };
            let seen = values.entry(known).or_default();
            if !seen.is_empty() && kind != Kind::Strings {
                return Err(format!("duplicate flag specified: --{name}"));
            }
            let value = match (kind, value) {
                (Kind::Bool, Some("")) => return Err(format!("missing a value on flag: --{name}")),
                (Kind::Bool, None) => "true".to_string(),
                (Kind::Bool, Some(v)) => match v.to_lowercase().as_str() {
                    "true" => "true".to_string(),
                    "false" => "false".to_string(),
                    _ => return Err(format!("expecting boolean value for flag --{name}, not: {v}")),
                },
                (_, None) => return Err(format!("missing a value on flag: --{name}")),
                (_, Some(v)) => v.to_string(),
            };
            seen.push(value);
        }
        Ok(Flags { values })
    }

    /// The value of a string flag, if given.
    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.values.get(name).and_then(|v| v.last()).cloned()
    }

    /// Every value of a repeatable flag, in order.
    pub(crate) fn strings(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }

    /// A boolean flag: `None` when not given.
    pub(crate) fn bool(&self, name: &str) -> Option<bool> {
        self.values.get(name).and_then(|v| v.last()).map(|v| v == "true")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COPY: &[(&str, Kind)] =
        &[("from", Kind::String), ("chown", Kind::String), ("link", Kind::Bool), ("exclude", Kind::Strings)];

    fn parse(args: &[&str]) -> Result<Flags, String> {
        Flags::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>(), COPY)
    }

    #[test]
    fn values_booleans_and_repeats() {
        let f = parse(&["--from=build", "--link", "--exclude=a", "--exclude=b"]).unwrap();
        assert_eq!(f.string("from").as_deref(), Some("build"));
        assert_eq!(f.bool("link"), Some(true));
        assert_eq!(f.strings("exclude"), ["a", "b"]);
        assert_eq!(parse(&["--link=FALSE"]).unwrap().bool("link"), Some(false));
        assert_eq!(parse(&["--", "--link"]).unwrap().bool("link"), None);
    }

    #[test]
    fn errors_say_which_flag() {
        assert_eq!(parse(&["--form=x"]).err().unwrap(), "unknown flag: --form (did you mean from?)");
        assert_eq!(parse(&["--from=a", "--from=b"]).err().unwrap(), "duplicate flag specified: --from");
        assert_eq!(parse(&["--from"]).err().unwrap(), "missing a value on flag: --from");
        assert_eq!(parse(&["--link="]).err().unwrap(), "missing a value on flag: --link");
        assert_eq!(parse(&["--link=yes"]).err().unwrap(), "expecting boolean value for flag --link, not: yes");
        assert_eq!(parse(&["-x"]).err().unwrap(), "arg should start with -- : -x");
        assert_eq!(
            Flags::parse(&["--x=1".to_string()], &[]).err().unwrap(),
            "unknown flag: --x (this instruction takes no flags)"
        );
    }
}

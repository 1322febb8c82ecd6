//! A workflow's job DAG laid out for server-side SVG: one column per `requires` depth, jobs stacked in each
//! column in workflow order, edges as curves from a job's right side to its dependents' left side.
//!
//! The template (`workflow_graph.html`) only places what this computes; names stay text and are escaped there.
//! A `requires` naming no job of the workflow is ignored, and a cycle (the planner refuses them, but the data
//! is outside this crate) puts the job back in column 0 rather than looping.

use std::collections::HashMap;

use serde::Serialize;

use crate::model::{UnixMillis, WorkflowJob};
use crate::view::{duration, truncate_chars};

pub const NODE_WIDTH: u32 = 200;
pub const NODE_HEIGHT: u32 = 44;
const COLUMN_GAP: u32 = 56;
const ROW_GAP: u32 = 14;
const MARGIN: u32 = 8;

#[derive(Debug, Clone, Serialize)]
pub struct Graph {
    pub width: u32,
    pub height: u32,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    pub job_id: String,
    /// The name cut to what fits the box (the full name is the node's tooltip).
    pub label: String,
    pub name: String,
    pub status: &'static str,
    pub status_label: &'static str,
    pub approval: bool,
    /// "1m 05s", empty when the job has not started.
    pub duration: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Edge {
    /// An SVG path (`M x y C …`).
    pub d: String,
    pub status: &'static str,
}

/// Lays out `jobs`; `now` gives running jobs their duration so far.
pub fn layout(jobs: &[WorkflowJob], now: UnixMillis) -> Graph {
    let index: HashMap<&str, usize> = jobs.iter().enumerate().map(|(i, j)| (j.name.as_str(), i)).collect();
    let mut depth: Vec<Option<usize>> = vec![None; jobs.len()];
    for i in 0..jobs.len() {
        let mut visiting = vec![false; jobs.len()];
        depth_of(i, jobs, &index, &mut depth, &mut visiting);
    }
    let depth: Vec<usize> = depth.into_iter().map(|d| d.unwrap_or(0)).collect();
    let columns = depth.iter().copied().max().map_or(0, |d| d + 1);
    let mut rows_in_column = vec![0u32; columns];
    let mut position = vec![(0u32, 0u32); jobs.len()];
    let mut nodes = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        let column = depth[i];
        let row = rows_in_column[column];
        rows_in_column[column] += 1;
        let x = MARGIN + column as u32 * (NODE_WIDTH + COLUMN_GAP);
        let y = MARGIN + row * (NODE_HEIGHT + ROW_GAP);
        position[i] = (x, y);
        let duration = match job.started_at {
            Some(start) => duration(job.finished_at.unwrap_or(now).saturating_sub(start)),
            None => String::new(),
        };
        nodes.push(Node {
            x,
            y,
            width: NODE_WIDTH,
            height: NODE_HEIGHT,
            job_id: job.id.clone(),
            label: truncate_chars(&job.name, 24),
            name: job.name.clone(),
            status: job.status.as_str(),
            status_label: job.status.label(),
            approval: job.kind == crate::model::JobKind::Approval,
            duration,
        });
    }
    let mut edges = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        for required in &job.requires {
            let Some(&from) = index.get(required.as_str()) else { continue };
            if depth[from] >= depth[i] {
                continue;
            }
            let (fx, fy) = position[from];
            let (tx, ty) = position[i];
            let (x1, y1) = (fx + NODE_WIDTH, fy + NODE_HEIGHT / 2);
            let (x2, y2) = (tx, ty + NODE_HEIGHT / 2);
            let bend = (x2 - x1) / 2;
            edges.push(Edge {
                d: format!("M {x1} {y1} C {} {y1}, {} {y2}, {x2} {y2}", x1 + bend, x2 - bend),
                status: jobs[from].status.as_str(),
            });
        }
    }
    let tallest = rows_in_column.iter().copied().max().unwrap_or(0);
    Graph {
        width: 2 * MARGIN + (columns as u32 * (NODE_WIDTH + COLUMN_GAP)).saturating_sub(COLUMN_GAP),
        height: 2 * MARGIN + (tallest * (NODE_HEIGHT + ROW_GAP)).saturating_sub(ROW_GAP),
        nodes,
        edges,
    }
}

fn depth_of(
    i: usize,
    jobs: &[WorkflowJob],
    index: &HashMap<&str, usize>,
    depth: &mut Vec<Option<usize>>,
    visiting: &mut Vec<bool>,
) -> usize {
    if let Some(d) = depth[i] {
        return d;
    }
    if visiting[i] {
        return 0;
    }
    visiting[i] = true;
    let mut d = 0;
    for required in &jobs[i].requires {
        if let Some(&j) = index.get(required.as_str()) {
            if j != i && !visiting[j] {
                d = d.max(depth_of(j, jobs, index, depth, visiting) + 1);
            }
        }
    }
    visiting[i] = false;
    depth[i] = Some(d);
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JobKind, Status};

    fn job(name: &str, requires: &[&str]) -> WorkflowJob {
        WorkflowJob {
            id: format!("id-{name}"),
            name: name.to_string(),
            kind: JobKind::Build,
            status: Status::Success,
            requires: requires.iter().map(|s| s.to_string()).collect(),
            started_at: Some(1_000),
            finished_at: Some(66_000),
        }
    }

    #[test]
    fn columns_follow_requires_depth() {
        let jobs = [job("build", &[]), job("lint", &[]), job("test", &["build"]), job("deploy", &["test", "lint"])];
        let graph = layout(&jobs, 0);
        let xs: Vec<u32> = graph.nodes.iter().map(|n| n.x).collect();
        assert_eq!(xs, vec![8, 8, 264, 520]);
        assert_eq!(graph.nodes[1].y, 8 + 44 + 14);
        assert_eq!(graph.edges.len(), 3);
        assert_eq!(graph.nodes[0].duration, "1m 05s");
        assert_eq!(graph.width, 8 * 2 + 3 * 256 - 56);
    }

    #[test]
    fn cycles_and_unknown_requires_do_not_loop() {
        let jobs = [job("a", &["b"]), job("b", &["a"]), job("c", &["nope", "c"])];
        let graph = layout(&jobs, 0);
        assert_eq!(graph.nodes.len(), 3);
        assert_eq!(graph.nodes[2].x, 8);
    }
}

//! Job execution through the engine library: steps, service containers, caches, workspaces, artifacts.

pub mod exec;

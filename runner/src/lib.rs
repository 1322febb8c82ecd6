//! Job execution through the engine library ([`exec`]: steps, service containers, caches, workspaces,
//! artifacts) and the agent that runs jobs for a coordinator ([`agent`]).

pub mod agent;
pub mod exec;

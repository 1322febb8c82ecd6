//! GitHub: webhook deliveries in ([`webhook`]) and commit statuses out ([`status`]).

pub mod status;
pub mod webhook;

//! GitHub: webhook deliveries in ([`webhook`]), commit statuses out ([`status`]), and the token git over https
//! uses for private repositories ([`access`]).

pub mod access;
pub mod status;
pub mod webhook;

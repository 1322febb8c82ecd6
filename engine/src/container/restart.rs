//! `restart`: stop (with the same grace period rules) then start detached.

use super::store::ContainerStore;
use super::Result;

pub fn restart(store: &ContainerStore, id: &str, timeout: Option<i64>) -> Result<()> {
    super::stop::stop(store, id, timeout)?;
    super::start::start(store, id)?;
    Ok(())
}

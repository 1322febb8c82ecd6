//! `container prune`: remove every stopped container.

use super::store::ContainerStore;
use super::Result;

/// Removes all containers that are not running; returns their IDs and the bytes their upper dirs held.
pub fn prune(store: &ContainerStore) -> Result<(Vec<String>, u64)> {
    let mut removed = Vec::new();
    let mut bytes = 0;
    for (c, state) in store.list()? {
        if state.is_running() {
            continue;
        }
        bytes += crate::image::layer::dir_size(&store.dir(&c.id).join("upper"));
        super::remove::remove_files(store, &c.id)?;
        removed.push(c.id);
    }
    Ok((removed, bytes))
}

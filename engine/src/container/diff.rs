//! `diff`: what changed in a container's filesystem against its image (`A`dded, `C`hanged, `D`eleted), read
//! from the overlay upper directory.

use super::rootfs::{changes, Change, RootfsDirs};
use super::store::ContainerStore;
use super::Result;

pub fn diff(store: &ContainerStore, id: &str) -> Result<Vec<Change>> {
    let c = store.load(id)?;
    let dirs = RootfsDirs::of(&store.dir(id), &c);
    changes(&dirs.upper, &dirs.lower)
}

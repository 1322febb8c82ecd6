//! `export`: the container's merged filesystem as a tar stream (the rootfs is mounted for the duration if the
//! container is not running).

use std::io::Write;

use super::rootfs::{tree_tar, Mounted};
use super::store::ContainerStore;
use super::Result;

pub fn export(store: &ContainerStore, id: &str, out: impl Write) -> Result<()> {
    let c = store.load(id)?;
    let mounted = Mounted::container(store, &c)?;
    tree_tar(mounted.path(), out)
}

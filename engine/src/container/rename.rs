//! `rename`: give a container a new (unique, valid) name.

use super::store::ContainerStore;
use super::{names, Error, Result};

pub fn rename(store: &ContainerStore, id: &str, new_name: &str) -> Result<()> {
    let name = names::validate(new_name)?;
    let lock = store.lock()?;
    let mut c = store.load(id)?;
    if let Some(other) = store.name_taken(&name, Some(id))? {
        return Err(Error::NameInUse { name, id: other });
    }
    c.name = name;
    store.save(&c, &lock)
}

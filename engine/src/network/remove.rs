//! `network rm` and `network prune`: a user-defined network without containers loses its bridge, its firewall
//! elements and its record. Endpoints whose namespace is gone do not count as containers (see
//! `NetworkStore::reap_stale`). The built-in networks cannot be removed.

use super::{host_lock, Error, Network, NetworkStore, Result};

impl NetworkStore {
    /// Removes a network by name, ID or unique ID prefix; returns its record.
    pub fn remove(&self, name: &str) -> Result<Network> {
        let lock = self.root.lock()?;
        let mut n = self.resolve(name)?;
        if n.builtin {
            return Err(Error::Predefined(n.name));
        }
        let stale = self.reap_stale(&mut n);
        if !n.endpoints.is_empty() {
            return Err(Error::ActiveEndpoints { name: n.name, id: n.id });
        }
        let host = host_lock()?;
        self.deactivate(&n, &lock, &host)?;
        drop(host);
        self.delete_record(&n, &lock)?;
        self.refresh_hosts(&stale, &lock)?;
        Ok(n)
    }

    /// Removes every user-defined network no container is connected to; returns their names.
    pub fn prune(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for n in self.list()? {
            if n.builtin {
                continue;
            }
            match self.remove(&n.id) {
                Ok(n) => removed.push(n.name),
                // In use (live endpoints), or removed by someone else meanwhile.
                Err(Error::ActiveEndpoints { .. }) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }
}

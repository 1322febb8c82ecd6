//! `network rm` and `network prune`: a user-defined network without containers loses its bridge, its firewall elements
//! and its record; `prune` also gives an unused built-in `bridge`'s device, elements and subnet back (the built-in
//! network keeps them otherwise, as docker's `docker0`). Endpoints whose namespace is gone do not count as containers
//! (see `NetworkStore::reap_stale`). The built-in networks cannot be removed.

use super::{host_lock, Error, Network, NetworkStore, Result, DRIVER_BRIDGE};

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

    /// Removes every user-defined network no container is connected to; returns their names. An unused
    /// built-in `bridge` gives its bridge device, firewall elements and subnet back (it is not removed).
    pub fn prune(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for n in self.list()? {
            if n.builtin {
                if n.driver == DRIVER_BRIDGE && n.subnet.is_some() {
                    self.release_idle_builtin(&n.id)?;
                }
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

    /// Gives back the device, firewall elements and subnet of the built-in bridge network `id` if no live
    /// container is on it.
    fn release_idle_builtin(&self, id: &str) -> Result<()> {
        let lock = self.root.lock()?;
        let mut n = self.resolve(id)?;
        let stale = self.reap_stale(&mut n);
        if n.endpoints.is_empty() && n.subnet.is_some() {
            let host = host_lock()?;
            self.deactivate(&n, &lock, &host)?;
            n.subnet = None;
            n.gateway = None;
        }
        if !stale.is_empty() || n.subnet.is_none() {
            self.save(&n, &lock)?;
        }
        Ok(())
    }
}

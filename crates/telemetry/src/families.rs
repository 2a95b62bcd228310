//! The one registry every family is registered in, and the list of the families' names.

use std::sync::Arc;

use parking_lot::Mutex;
use prometheus::Registry;
use prometheus::core::Collector;

/// A registry that also remembers the names it registered: a family with labels and no series
/// yet is left out of a scrape, so the names are the only complete list (the deploy checks use
/// it to verify the dashboard and the alert rules).
#[derive(Clone, Debug, Default)]
pub(crate) struct Families {
    pub(crate) registry: Registry,
    names: Arc<Mutex<Vec<String>>>,
}

impl Families {
    /// Registers `m` and returns it.
    ///
    /// # Panics
    /// If a family of the same name is registered twice: a programming error.
    pub(crate) fn register<M: Collector + Clone + 'static>(&self, m: M) -> M {
        self.names
            .lock()
            .extend(m.desc().iter().map(|d| d.fq_name.clone()));
        self.registry
            .register(Box::new(m.clone()))
            .expect("metric registered once");
        m
    }

    /// The registered families' names, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names = self.names.lock().clone();
        names.sort();
        names
    }
}

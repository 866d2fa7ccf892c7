//! The project's version history: each version the engine has run, when it went live, what
//! made it (start, file change, SIGHUP, the API) and which files it added, changed or removed
//! compared to the one before, by content hash. The last [`KEPT`] versions, in memory only: a
//! restart starts the history again with the version it loads.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

/// Versions kept; older ones are forgotten.
pub const KEPT: usize = 50;

/// One version, as `GET /api/versions` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Version {
    pub version: String,
    /// RFC 3339.
    pub at: String,
    pub trigger: String,
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl Version {
    /// `after` compared with `before`: both map a file's path to its content hash.
    pub fn between(
        before: &BTreeMap<String, String>,
        after: &BTreeMap<String, String>,
        version: &str,
        trigger: &str,
        at: String,
    ) -> Version {
        let mut v = Version {
            version: version.to_string(),
            at,
            trigger: trigger.to_string(),
            added: Vec::new(),
            changed: Vec::new(),
            removed: Vec::new(),
        };
        for (file, hash) in after {
            match before.get(file) {
                None => v.added.push(file.clone()),
                Some(old) if old != hash => v.changed.push(file.clone()),
                Some(_) => {}
            }
        }
        v.removed = before
            .keys()
            .filter(|f| !after.contains_key(*f))
            .cloned()
            .collect();
        v
    }
}

/// The bounded history.
#[derive(Debug, Default)]
pub struct History(Mutex<VecDeque<Version>>);

impl History {
    pub fn push(&self, version: Version) {
        let mut list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if list.len() == KEPT {
            list.pop_front();
        }
        list.push_back(version);
    }

    /// Newest first.
    pub fn newest_first(&self) -> Vec<Version> {
        let list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        list.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn files_are_compared_by_hash_and_the_list_is_bounded() {
        let before = files(&[("a.yaml", "1"), ("b.yaml", "2"), ("c.rhai", "3")]);
        let after = files(&[("a.yaml", "1"), ("b.yaml", "9"), ("d.yaml", "4")]);
        let v = Version::between(&before, &after, "v2", "file change", "t".into());
        assert_eq!(v.added, ["d.yaml"]);
        assert_eq!(v.changed, ["b.yaml"]);
        assert_eq!(v.removed, ["c.rhai"]);

        let history = History::default();
        for i in 0..KEPT + 5 {
            history.push(Version::between(
                &before,
                &before,
                &i.to_string(),
                "api",
                "t".into(),
            ));
        }
        let list = history.newest_first();
        assert_eq!(list.len(), KEPT);
        assert_eq!(list[0].version, (KEPT + 4).to_string());
        assert_eq!(list[KEPT - 1].version, "5");
    }
}

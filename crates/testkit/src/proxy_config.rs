//! YAML for a pgsplit instance under test: clients and admin HTTP on `127.0.0.1:0`, a fixed set of users.
//!
//! Tests build the text with [`ProxyYaml`], adjust it, and hand it to `pgsplit_config::parse`.
//! Building text rather than `Config` values keeps the tests on the same path as a user's file.

use crate::cluster::{APP_PASSWORD, APP_USER, ClusterEnv, Node};

/// A user that authenticates to pgsplit with SCRAM-SHA-256 (the default): `app` / `app`.
pub const SCRAM_USER: &str = APP_USER;
/// A user that authenticates to pgsplit with md5 and uses `app` on the servers.
pub const MD5_USER: &str = "app_md5";
/// The password of [`MD5_USER`].
pub const MD5_PASSWORD: &str = "md5secret";
/// A user that pgsplit lets in without a password (`auth: trust`) and that uses `app` on the servers.
pub const TRUST_USER: &str = "app_trust";
/// An admin-console user.
pub const ADMIN_USER: &str = "admin";
/// The password of [`ADMIN_USER`].
pub const ADMIN_PASSWORD: &str = "admin";

/// Builder for the YAML text of a test proxy.
#[derive(Clone, Debug)]
pub struct ProxyYaml {
    servers: Vec<(String, Node, &'static str)>,
    server_extra: Vec<(String, String)>,
    pool: Vec<(String, String)>,
    top: Vec<(String, String)>,
    extra_users: Vec<String>,
}

impl ProxyYaml {
    /// A proxy in front of one primary, with the standard test users.
    pub fn new(primary: Node) -> ProxyYaml {
        ProxyYaml {
            servers: vec![("primary".to_owned(), primary, "primary")],
            server_extra: Vec::new(),
            pool: Vec::new(),
            top: Vec::new(),
            extra_users: Vec::new(),
        }
    }

    /// A proxy in front of the cluster's primary only.
    pub fn for_primary(env: &ClusterEnv) -> ProxyYaml {
        ProxyYaml::new(env.primary.clone())
    }

    /// Adds the cluster's replicas as `role: replica` servers named `replica1`, `replica2`, ...
    pub fn with_replicas(mut self, env: &ClusterEnv) -> ProxyYaml {
        for (i, node) in env.replicas.iter().enumerate() {
            self.servers
                .push((format!("replica{}", i + 1), node.clone(), "replica"));
        }
        self
    }

    /// Sets `pool.<key>: <value>` (value is YAML, e.g. `"1"` or `session`).
    pub fn pool(mut self, key: &str, value: &str) -> ProxyYaml {
        self.pool.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Adds `key: value` (YAML) to the entry of server `name` (e.g. `max_connections`, `5`).
    pub fn server_option(mut self, name: &str, key: &str, value: &str) -> ProxyYaml {
        self.server_extra
            .push((name.to_owned(), format!("{key}: {value}")));
        self
    }

    /// Sets a top-level `<key>: <value>` (value is YAML, e.g. `2s` or `{ a: 1 }`).
    pub fn set(mut self, key: &str, value: &str) -> ProxyYaml {
        self.top.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Adds one more user given as a YAML flow mapping, e.g. `{ name: x, password: y }`.
    pub fn user(mut self, flow_mapping: &str) -> ProxyYaml {
        self.extra_users.push(flow_mapping.to_owned());
        self
    }

    /// The validated config, as pgsplit would load it from a file named `test.yaml`.
    ///
    /// # Panics
    ///
    /// When pgsplit rejects the YAML; the message shows the errors and the text.
    pub fn config(&self) -> pgsplit_config::Config {
        let text = self.build();
        pgsplit_config::parse(&text, "test.yaml")
            .unwrap_or_else(|e| panic!("test config rejected: {e}\n---\n{text}"))
    }

    /// The YAML text.
    pub fn build(&self) -> String {
        let mut y = String::new();
        y.push_str("listen: 127.0.0.1:0\n");
        y.push_str("admin: { listen: 127.0.0.1:0 }\n");
        for (k, v) in &self.top {
            y.push_str(&format!("{k}: {v}\n"));
        }
        y.push_str("users:\n");
        y.push_str(&format!(
            "  - {{ name: {SCRAM_USER}, password: {APP_PASSWORD} }}\n"
        ));
        y.push_str(&format!(
            "  - {{ name: {MD5_USER}, password: {MD5_PASSWORD}, auth: md5, \
             server_user: {APP_USER}, server_password: {APP_PASSWORD} }}\n"
        ));
        y.push_str(&format!(
            "  - {{ name: {TRUST_USER}, password: {APP_PASSWORD}, auth: trust, \
             server_user: {APP_USER}, server_password: {APP_PASSWORD} }}\n"
        ));
        y.push_str(&format!(
            "  - {{ name: {ADMIN_USER}, password: {ADMIN_PASSWORD}, admin: true }}\n"
        ));
        for u in &self.extra_users {
            y.push_str(&format!("  - {u}\n"));
        }
        if !self.pool.is_empty() {
            let fields: Vec<String> = self.pool.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            y.push_str(&format!("pool: {{ {} }}\n", fields.join(", ")));
        }
        y.push_str("servers:\n");
        for (name, node, role) in &self.servers {
            let extra: String = self
                .server_extra
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, field)| format!(", {field}"))
                .collect();
            y.push_str(&format!(
                "  - {{ name: {name}, host: {}, port: {}, role: {role}{extra} }}\n",
                node.host, node.port
            ));
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_primary_only_yaml() {
        let node = Node {
            host: "127.0.0.1".into(),
            port: 25432,
        };
        let y = ProxyYaml::new(node)
            .pool("size", "1")
            .set("shutdown_timeout", "2s")
            .build();
        assert!(
            y.starts_with("listen: 127.0.0.1:0\nadmin: { listen: 127.0.0.1:0 }\n"),
            "{y}"
        );
        assert!(y.contains("shutdown_timeout: 2s\n"), "{y}");
        assert!(y.contains("pool: { size: 1 }\n"), "{y}");
        assert!(
            y.contains("  - { name: primary, host: 127.0.0.1, port: 25432, role: primary }\n"),
            "{y}"
        );
        assert!(y.contains("auth: md5"), "{y}");
        assert!(y.contains("auth: trust"), "{y}");
        assert!(!y.contains("replica"), "{y}");
    }

    #[test]
    fn pgsplit_accepts_the_yaml() {
        let env = ClusterEnv::from_vars("127.0.0.1:1", Some("127.0.0.1:2"), None);
        let config = ProxyYaml::for_primary(&env)
            .with_replicas(&env)
            .pool("size", "2")
            .config();
        assert_eq!(config.listen, "127.0.0.1:0");
        assert_eq!(config.servers.len(), 2);
        assert_eq!(config.pool.size, 2);
        let md5 = config.user(MD5_USER).expect("md5 user");
        assert_eq!(md5.auth, pgsplit_config::AuthMethod::Md5);
        assert_eq!(md5.server_user, APP_USER);
        assert!(config.user(ADMIN_USER).is_some_and(|u| u.admin));
    }

    #[test]
    fn adds_replicas() {
        let env = ClusterEnv::from_vars("127.0.0.1:1", Some("127.0.0.1:2,127.0.0.1:3"), None);
        let y = ProxyYaml::for_primary(&env).with_replicas(&env).build();
        assert!(
            y.contains("name: replica2, host: 127.0.0.1, port: 3, role: replica"),
            "{y}"
        );
    }
}

//! HTTPS agents for the artefact fetcher and the MLflow client.
//!
//! ureq's rustls setup trusts only the Mozilla roots it compiles in, so
//! behind a company proxy or a sandbox egress (a private CA in the
//! machine's store) every request fails with `UnknownIssuer` although pip
//! and curl work. These agents trust both: the Mozilla roots, and the
//! machine's store as `rustls-native-certs` reads it (which honours
//! `SSL_CERT_FILE` and `SSL_CERT_DIR`).

use std::sync::{Arc, OnceLock};

/// The TLS configuration every agent shares (built once per process:
/// reading the system store takes milliseconds).
fn tls_config() -> Option<Arc<rustls::ClientConfig>> {
    static CONFIG: OnceLock<Option<Arc<rustls::ClientConfig>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            // A machine without a readable store keeps the Mozilla roots.
            if let Ok(native) = rustls_native_certs::load_native_certs() {
                roots.add_parsable_certificates(native);
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .ok()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(Arc::new(config))
        })
        .clone()
}

/// A ureq agent builder whose TLS trusts the Mozilla roots and the
/// machine's own certificate store.
pub fn agent() -> ureq::AgentBuilder {
    let b = ureq::AgentBuilder::new();
    match tls_config() {
        Some(c) => b.tls_config(c),
        None => b,
    }
}

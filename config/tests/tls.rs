//! TLS in the config: `[listener.tls]` with its certificates, `[listener.redirect_https]` and
//! `[upstreams.NAME.tls]`. A valid setup becomes the expected model (paths resolved, files
//! read, names lower-cased); each broken one is rejected at the offending key or value with a
//! hint. PEM files here are fakes: the config crate reads block labels, never DER.

mod common;

use std::path::{Path, PathBuf};

use common::failed_at;

use coregate_config::{
    defaults, load_file, load_str, Certificate, Config, ConfigError, Listener, ListenerTls,
    RedirectHttps, TlsVersion, UpstreamTls,
};

const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBZmFrZSBsZWFm\n-----END CERTIFICATE-----\n";
const CHAIN: &str = "subject=CN=api.example.com\n\
                     -----BEGIN CERTIFICATE-----\nMIIBZmFrZSBsZWFm\n-----END CERTIFICATE-----\n\
                     -----BEGIN CERTIFICATE-----\nMIIBZmFrZSBpbnRlcm1lZGlhdGU=\n\
                     -----END CERTIFICATE-----\n";
const PKCS8_KEY: &str =
    "-----BEGIN PRIVATE KEY-----\nMIGHZmFrZSBrZXk=\n-----END PRIVATE KEY-----\n";
const RSA_KEY: &str =
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEZmFrZSBrZXk=\n-----END RSA PRIVATE KEY-----\n";
/// What `openssl ecparam -genkey` writes: the curve's parameters, then the key.
const EC_KEY: &str =
    "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n\
                      -----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIGZha2U=\n\
                      -----END EC PRIVATE KEY-----\n";

/// A directory in the temp dir, unique to this test process and `name`, removed on drop, with
/// `certs/api.pem` (a chain), `certs/api.key` (PKCS#8), `certs/rsa.key`, `certs/ec.key` and
/// `certs/ca.pem`.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let path =
            std::env::temp_dir().join(format!("coregate-config-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(path.join("certs")).expect("create temp dir");
        let dir = Dir(path);
        dir.write("certs/api.pem", CHAIN.as_bytes());
        dir.write("certs/api.key", PKCS8_KEY.as_bytes());
        dir.write("certs/rsa.key", RSA_KEY.as_bytes());
        dir.write("certs/ec.key", EC_KEY.as_bytes());
        dir.write("certs/ca.pem", CERT.as_bytes());
        dir
    }

    fn write(&self, relative: &str, bytes: &[u8]) {
        std::fs::write(self.0.join(relative), bytes).expect("write temp file");
    }

    fn config_path(&self) -> PathBuf {
        self.0.join("gateway.toml")
    }

    /// Writes `text` as `gateway.toml` in this directory and loads it.
    fn load(&self, text: &str) -> Result<Config, ConfigError> {
        std::fs::write(self.config_path(), text).expect("write config");
        load_file(&self.config_path())
    }

    /// Loads `text`, which must be valid.
    #[track_caller]
    fn loads(&self, text: &str) -> Config {
        match self.load(text) {
            Ok(config) => config,
            Err(error) => panic!("{error}\n--- text:\n{text}"),
        }
    }

    /// Loads `text`, which must fail at the start of the `nth` (from 0) `needle`, about
    /// `field`, with a hint.
    #[track_caller]
    fn fails_at(&self, text: &str, needle: &str, nth: usize, field: &str) -> ConfigError {
        let file = self.config_path().display().to_string();
        failed_at(self.load(text), text, &file, needle, nth, field)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const UPSTREAM_AND_ROUTE: &str = "
[upstreams.app]
endpoints = [{ address = \"10.0.0.1:8080\" }]

[[route]]
path_prefix = \"/\"
upstream = \"app\"
";

const API_CERTIFICATE: &str = "[[listener.tls.certificate]]
cert_file = \"certs/api.pem\"
key_file = \"certs/api.key\"
";

/// A config whose only listener has `[listener.tls]` with `lines` (which may add
/// `[[listener.tls.certificate]]` tables after them).
fn tls(lines: &str) -> String {
    format!(
        "[[listener]]\naddress = \"127.0.0.1:8443\"\n\n[listener.tls]\n{lines}\n\
         {UPSTREAM_AND_ROUTE}"
    )
}

/// A config whose only listener has `[listener.tls]` and one certificate table with `lines`.
fn certificate(lines: &str) -> String {
    tls(&format!("[[listener.tls.certificate]]\n{lines}\n"))
}

/// A config whose only (plain) listener has `[listener.redirect_https]` with `lines`.
fn redirect(lines: &str) -> String {
    format!(
        "[[listener]]\naddress = \"127.0.0.1:8080\"\n\n[listener.redirect_https]\n{lines}\n\
         {UPSTREAM_AND_ROUTE}"
    )
}

/// A config with an upstream `secure` whose `[upstreams.secure.tls]` has `lines`.
fn upstream_tls(lines: &str) -> String {
    format!(
        "[[listener]]\naddress = \"127.0.0.1:8080\"\n\n\
         [upstreams.secure]\nendpoints = [{{ address = \"10.0.0.2:9443\" }}]\n\n\
         [upstreams.secure.tls]\n{lines}\n\n\
         [[route]]\npath_prefix = \"/\"\nupstream = \"secure\"\n"
    )
}

#[test]
fn a_tls_setup_becomes_the_expected_model() {
    let dir = Dir::new("model");
    let abs = dir.0.join("certs/api.pem");
    let text = format!(
        r#"[[listener]]
name = "https"
address = "0.0.0.0:8443"

[listener.tls]
versions = ["1.3", "1.2"]
session_tickets = false
handshake_timeout_ms = 5000

[[listener.tls.certificate]]
cert_file = "certs/api.pem"
key_file = "certs/api.key"
names = ["API.Example.com", "*.Example.COM"]

[[listener.tls.certificate]]
cert_file = '{abs}'
key_file = "certs/../certs/ec.key"
names = ["static.example.net"]
default = true

[[listener.tls.certificate]]
cert_file = "certs/api.pem"
key_file = "certs/rsa.key"

[[listener]]
name = "http"
address = "0.0.0.0:8080"

[listener.redirect_https]
port = 443
except_prefixes = ["/.well-known/acme-challenge/", "/healthz"]

[[listener]]
address = "127.0.0.1:9443"

[[listener.tls.certificate]]
cert_file = "certs/api.pem"
key_file = "certs/api.key"
names = ["api.example.com"]

[upstreams.app]
endpoints = [{{ address = "10.0.0.1:8080" }}]

[upstreams.secure]
endpoints = [{{ address = "10.0.0.2:9443" }}]

[upstreams.secure.tls]
server_name = "API.Internal"
ca_file = "certs/ca.pem"

[upstreams.by_ip]
endpoints = [{{ address = "10.0.0.3:9443" }}]

[upstreams.by_ip.tls]

[[route]]
path_prefix = "/"
upstream = "app"
"#,
        abs = abs.display()
    );
    let config = dir.loads(&text);
    let certs = dir.0.join("certs");
    let api = Certificate {
        cert_path: certs.join("api.pem"),
        cert_pem: CHAIN.as_bytes().to_vec(),
        key_path: certs.join("api.key"),
        key_pem: PKCS8_KEY.as_bytes().to_vec(),
        names: vec!["api.example.com".to_owned(), "*.example.com".to_owned()],
    };
    assert_eq!(
        config.listeners,
        vec![
            Listener {
                name: "https".to_owned(),
                address: "0.0.0.0:8443".parse().expect("address"),
                tls: Some(ListenerTls {
                    certificates: vec![
                        api.clone(),
                        Certificate {
                            cert_path: abs.clone(),
                            cert_pem: CHAIN.as_bytes().to_vec(),
                            key_path: dir.0.join("certs/../certs/ec.key"),
                            key_pem: EC_KEY.as_bytes().to_vec(),
                            names: vec!["static.example.net".to_owned()],
                        },
                        Certificate {
                            key_path: certs.join("rsa.key"),
                            key_pem: RSA_KEY.as_bytes().to_vec(),
                            names: Vec::new(),
                            ..api.clone()
                        },
                    ],
                    default_certificate: 1,
                    // Ascending, whatever the order written.
                    versions: vec![TlsVersion::Tls12, TlsVersion::Tls13],
                    session_tickets: false,
                    handshake_timeout_ms: 5000,
                }),
                redirect_https: None,
            },
            Listener {
                name: "http".to_owned(),
                address: "0.0.0.0:8080".parse().expect("address"),
                tls: None,
                redirect_https: Some(RedirectHttps {
                    port: 443,
                    status: defaults::REDIRECT_HTTPS_STATUS,
                    except_prefixes: vec![
                        "/.well-known/acme-challenge/".to_owned(),
                        "/healthz".to_owned(),
                    ],
                }),
            },
            Listener {
                name: "127.0.0.1:9443".to_owned(),
                address: "127.0.0.1:9443".parse().expect("address"),
                // Every default; the same names as on another listener are fine.
                tls: Some(ListenerTls {
                    certificates: vec![Certificate {
                        names: vec!["api.example.com".to_owned()],
                        ..api.clone()
                    }],
                    default_certificate: 0,
                    versions: vec![TlsVersion::Tls12, TlsVersion::Tls13],
                    session_tickets: defaults::TLS_SESSION_TICKETS,
                    handshake_timeout_ms: defaults::TLS_HANDSHAKE_TIMEOUT_MS,
                }),
                redirect_https: None,
            },
        ]
    );
    let upstream = |name: &str| {
        config
            .upstreams
            .iter()
            .find(|u| u.name == name)
            .unwrap_or_else(|| panic!("no upstream {name}"))
    };
    assert_eq!(upstream("app").tls, None);
    assert_eq!(
        upstream("secure").tls,
        Some(UpstreamTls {
            server_name: Some("api.internal".to_owned()),
            ca: Some((certs.join("ca.pem"), CERT.as_bytes().to_vec())),
        })
    );
    assert_eq!(
        upstream("by_ip").tls,
        Some(UpstreamTls {
            server_name: None,
            ca: None,
        })
    );

    let summary = config.summary();
    for line in [
        "  https 0.0.0.0:8443 tls versions=1.2,1.3 handshake_timeout_ms=5000 \
         session_tickets=off certificates=3\n"
            .to_owned(),
        format!(
            "    certificate[0] names=api.example.com,*.example.com cert_file={}\n",
            certs.join("api.pem").display()
        ),
        format!(
            "    certificate[1] default names=static.example.net cert_file={}\n",
            abs.display()
        ),
        "    certificate[2] names=(from the certificate) cert_file=".to_owned(),
        "  http 0.0.0.0:8080 redirect_https port=443 status=308 \
         except_prefixes=/.well-known/acme-challenge/,/healthz\n"
            .to_owned(),
        "  127.0.0.1:9443 tls versions=1.2,1.3 handshake_timeout_ms=10000 certificates=1\n"
            .to_owned(),
        format!(
            " tls server_name=api.internal ca_file={}\n",
            certs.join("ca.pem").display()
        ),
        " tls server_name=(none: endpoint IP) ca=system roots\n".to_owned(),
    ] {
        assert!(summary.contains(&line), "no {line:?} in:\n{summary}");
    }
    assert!(
        !summary.contains("MIIB"),
        "the summary shows PEM:\n{summary}"
    );
    // Debug never prints key material either.
    let debug = format!("{:?}", config.listeners[0]);
    assert!(
        !debug.contains("MIGH") && !debug.contains("MHcC"),
        "{debug}"
    );
}

#[test]
fn server_name_may_be_an_ip_address() {
    let dir = Dir::new("server-name-ip");
    for (written, stored) in [("10.0.0.2", "10.0.0.2"), ("FD00:0::2", "fd00::2")] {
        let config = dir.loads(&upstream_tls(&format!("server_name = \"{written}\"")));
        let tls = config.upstreams[0].tls.as_ref().expect("tls");
        assert_eq!(tls.server_name.as_deref(), Some(stored));
    }
}

#[test]
fn text_without_a_file_resolves_against_the_current_directory() {
    // Under `cargo test` the current directory is the crate root, which has no certs/.
    let error = match load_str(&tls(API_CERTIFICATE), "<text>") {
        Ok(_) => panic!("found certs/api.pem in the current directory"),
        Err(error) => error,
    };
    assert_eq!(error.field, "listener[0].tls.certificate[0].cert_file");
    assert!(
        error.message.starts_with("cannot read certs/api.pem: "),
        "{error}"
    );
}

// ----- files -----

#[test]
fn a_missing_file_names_the_resolved_path_and_the_os_error() {
    let dir = Dir::new("missing");
    let text = certificate("cert_file = \"certs/nope.pem\"\nkey_file = \"certs/api.key\"");
    let error = dir.fails_at(
        &text,
        "\"certs/nope.pem\"",
        0,
        "listener[0].tls.certificate[0].cert_file",
    );
    assert_eq!(
        error.message,
        format!(
            "cannot read {}: No such file or directory (os error 2)",
            dir.0.join("certs/nope.pem").display()
        )
    );
    assert_eq!(
        error.hint.as_deref(),
        Some("a relative path is resolved against the config file's directory")
    );

    let text = certificate("cert_file = \"certs/api.pem\"\nkey_file = \"certs/gone.key\"");
    let error = dir.fails_at(
        &text,
        "\"certs/gone.key\"",
        0,
        "listener[0].tls.certificate[0].key_file",
    );
    assert!(
        error.message.contains("certs/gone.key: No such file"),
        "{error}"
    );

    let text = upstream_tls("ca_file = \"/nonexistent/coregate/ca.pem\"");
    let error = dir.fails_at(&text, "\"/nonexistent", 0, "upstreams.secure.tls.ca_file");
    assert!(
        error
            .message
            .starts_with("cannot read /nonexistent/coregate/ca.pem: "),
        "{error}"
    );

    let text = certificate("cert_file = \"\"\nkey_file = \"certs/api.key\"");
    let error = dir.fails_at(&text, "\"\"", 0, "listener[0].tls.certificate[0].cert_file");
    assert_eq!(error.message, "the path is empty");
}

#[test]
fn required_certificate_keys_are_schema_errors() {
    let dir = Dir::new("required");
    let error = match dir.load(&certificate("cert_file = \"certs/api.pem\"")) {
        Ok(_) => panic!("accepted a certificate without key_file"),
        Err(error) => error,
    };
    assert!(
        error.message.contains("missing field `key_file`"),
        "{error}"
    );
    assert_eq!(error.field, "listener[0].tls.certificate[0].key_file");
    // A typo in a table name is an unknown key, with the right one suggested.
    let text = tls(&API_CERTIFICATE.replace("certificate]]", "certificates]]"));
    let error = match dir.load(&text) {
        Ok(_) => panic!("accepted [[listener.tls.certificates]]"),
        Err(error) => error,
    };
    assert!(
        error
            .hint
            .as_deref()
            .is_some_and(|hint| hint.starts_with("did you mean `certificate`?")),
        "{error}"
    );
}

#[test]
fn a_certificate_file_needs_a_certificate_block() {
    let dir = Dir::new("cert-blocks");
    let at = "listener[0].tls.certificate[0].cert_file";
    let text = certificate("cert_file = \"certs/api.key\"\nkey_file = \"certs/api.key\"");
    let error = dir.fails_at(&text, "\"certs/api.key\"", 0, at);
    assert_eq!(
        error.message,
        format!(
            "{} holds no CERTIFICATE block (only PRIVATE KEY)",
            dir.0.join("certs/api.key").display()
        )
    );
    assert!(
        error
            .hint
            .as_deref()
            .is_some_and(|hint| hint.starts_with("this looks like the private key")),
        "{error}"
    );

    dir.write("certs/empty.pem", b"no PEM here\n");
    let text = certificate("cert_file = \"certs/empty.pem\"\nkey_file = \"certs/api.key\"");
    let error = dir.fails_at(&text, "\"certs/empty.pem\"", 0, at);
    assert!(
        error
            .message
            .ends_with("holds no CERTIFICATE block (no PEM block)"),
        "{error}"
    );

    dir.write("certs/cert.der", &[0x30, 0x82, 0x01, 0xff, 0xa0, 0x03]);
    let text = certificate("cert_file = \"certs/cert.der\"\nkey_file = \"certs/api.key\"");
    let error = dir.fails_at(&text, "\"certs/cert.der\"", 0, at);
    assert!(
        error.message.ends_with("cert.der is not PEM text"),
        "{error}"
    );
    assert!(
        error
            .hint
            .as_deref()
            .is_some_and(|hint| hint.contains("openssl x509 -inform DER")),
        "{error}"
    );

    dir.write(
        "certs/cut.pem",
        b"-----BEGIN CERTIFICATE-----\nMIIBZmFrZQ==\n",
    );
    let text = certificate("cert_file = \"certs/cut.pem\"\nkey_file = \"certs/api.key\"");
    let error = dir.fails_at(&text, "\"certs/cut.pem\"", 0, at);
    assert!(
        error.message.ends_with(
            "cut.pem is not valid PEM: the CERTIFICATE block of line 1 has no \
             -----END CERTIFICATE----- line"
        ),
        "{error}"
    );

    dir.write(
        "certs/trusted.pem",
        b"-----BEGIN TRUSTED CERTIFICATE-----\nMIIB\n-----END TRUSTED CERTIFICATE-----\n",
    );
    let text = certificate("cert_file = \"certs/trusted.pem\"\nkey_file = \"certs/api.key\"");
    let error = dir.fails_at(&text, "\"certs/trusted.pem\"", 0, at);
    assert!(
        error
            .hint
            .as_deref()
            .is_some_and(|hint| hint.contains("plain CERTIFICATE blocks")),
        "{error}"
    );

    // A combined file (chain and key) serves as both.
    dir.write(
        "certs/combined.pem",
        format!("{CHAIN}{PKCS8_KEY}").as_bytes(),
    );
    dir.loads(&certificate(
        "cert_file = \"certs/combined.pem\"\nkey_file = \"certs/combined.pem\"",
    ));
}

#[test]
fn a_key_file_needs_exactly_one_private_key() {
    let dir = Dir::new("key-blocks");
    let at = "listener[0].tls.certificate[0].key_file";
    let with_key = |file: &str| {
        certificate(&format!(
            "cert_file = \"certs/api.pem\"\nkey_file = \"certs/{file}\""
        ))
    };

    let error = dir.fails_at(&with_key("api.pem"), "\"certs/api.pem\"", 1, at);
    assert_eq!(
        error.message,
        format!(
            "{} holds no private key",
            dir.0.join("certs/api.pem").display()
        )
    );
    assert!(
        error
            .hint
            .as_deref()
            .is_some_and(|hint| hint.starts_with("this looks like a certificate")),
        "{error}"
    );

    dir.write("certs/two.key", format!("{PKCS8_KEY}{RSA_KEY}").as_bytes());
    let error = dir.fails_at(&with_key("two.key"), "\"certs/two.key\"", 0, at);
    assert!(
        error
            .message
            .ends_with("two.key holds 2 private keys (lines 1 and 4)"),
        "{error}"
    );

    dir.write(
        "certs/pkcs8-encrypted.key",
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkq\n\
          -----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let error = dir.fails_at(
        &with_key("pkcs8-encrypted.key"),
        "\"certs/pkcs8-encrypted.key\"",
        0,
        at,
    );
    assert!(
        error
            .message
            .ends_with("pkcs8-encrypted.key holds an encrypted private key (line 1)"),
        "{error}"
    );
    assert!(
        error
            .hint
            .as_deref()
            .is_some_and(|hint| hint.starts_with("coregate does not decrypt keys")),
        "{error}"
    );

    // OpenSSL's legacy encryption keeps the PKCS#1 label and says so in a header.
    dir.write(
        "certs/legacy-encrypted.key",
        b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
          DEK-Info: AES-256-CBC,0123456789ABCDEF0123456789ABCDEF\n\nMIIEZmFrZQ==\n\
          -----END RSA PRIVATE KEY-----\n",
    );
    let error = dir.fails_at(
        &with_key("legacy-encrypted.key"),
        "\"certs/legacy-encrypted.key\"",
        0,
        at,
    );
    assert!(error.message.contains("encrypted private key"), "{error}");

    dir.write(
        "certs/dsa.key",
        b"-----BEGIN DSA PRIVATE KEY-----\nMIIBuwIBAAKBgQ==\n-----END DSA PRIVATE KEY-----\n",
    );
    let error = dir.fails_at(&with_key("dsa.key"), "\"certs/dsa.key\"", 0, at);
    assert!(
        error.message.ends_with(
            "dsa.key holds a DSA PRIVATE KEY block (line 1), a key the gateway cannot load"
        ),
        "{error}"
    );

    dir.write(
        "certs/garbled.key",
        b"-----BEGIN PRIVATE KEY-----\nthis is not base64!\n-----END PRIVATE KEY-----\n",
    );
    let error = dir.fails_at(&with_key("garbled.key"), "\"certs/garbled.key\"", 0, at);
    assert!(
        error.message.ends_with(
            "garbled.key is not valid PEM: line 2 of the PRIVATE KEY block of line 1 is not base64"
        ),
        "{error}"
    );
}

#[test]
fn a_ca_file_holds_certificates_and_no_key() {
    let dir = Dir::new("ca");
    let at = "upstreams.secure.tls.ca_file";
    let error = dir.fails_at(
        &upstream_tls("ca_file = \"certs/api.key\""),
        "\"certs/api.key\"",
        0,
        at,
    );
    assert_eq!(
        error.message,
        format!(
            "{} holds a private key (PRIVATE KEY at line 1)",
            dir.0.join("certs/api.key").display()
        )
    );
    dir.write("certs/bundle.pem", format!("{CHAIN}{PKCS8_KEY}").as_bytes());
    dir.fails_at(
        &upstream_tls("ca_file = \"certs/bundle.pem\""),
        "\"certs/bundle.pem\"",
        0,
        at,
    );
    dir.write(
        "certs/params.pem",
        b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n",
    );
    let error = dir.fails_at(
        &upstream_tls("ca_file = \"certs/params.pem\""),
        "\"certs/params.pem\"",
        0,
        at,
    );
    assert!(
        error
            .message
            .ends_with("params.pem holds no CERTIFICATE block (only EC PARAMETERS)"),
        "{error}"
    );
}

// ----- names and the default certificate -----

#[test]
fn certificate_names_are_dns_names_with_one_leading_wildcard() {
    let dir = Dir::new("names");
    let at = "listener[0].tls.certificate[0].names[1]";
    for (bad, message) in [
        ("*.com", "name \"*.com\" would cover every name under .com"),
        (
            "a.*.com",
            "name \"a.*.com\" has a `*` that is not a whole leading `*.` label",
        ),
        (
            "*foo.com",
            "name \"*foo.com\" has a `*` that is not a whole leading `*.` label",
        ),
        (
            "*.*.example.com",
            "name \"*.*.example.com\" has more than one `*`",
        ),
        ("10.0.0.1", "name \"10.0.0.1\" is an IP address"),
        ("example.com.", "name \"example.com.\" ends with `.`"),
        (
            "a..example.com",
            "name \"a..example.com\" has an empty label (a leading or doubled `.`)",
        ),
        (
            "-a.example.com",
            "name \"-a.example.com\" has a label that starts or ends with `-`",
        ),
        (
            "a_b.example.com",
            "name \"a_b.example.com\" contains '_', which is not allowed in a host name",
        ),
        ("", "name is empty"),
    ] {
        let text = certificate(&format!(
            "cert_file = \"certs/api.pem\"\nkey_file = \"certs/api.key\"\n\
             names = [\"ok.example.com\", \"{bad}\"]"
        ));
        let error = dir.fails_at(&text, &format!("\"{bad}\""), 0, at);
        assert_eq!(error.message, message);
    }
    let label = "a".repeat(64);
    let text = certificate(&format!(
        "cert_file = \"certs/api.pem\"\nkey_file = \"certs/api.key\"\n\
         names = [\"ok.example.com\", \"{label}.example.com\"]"
    ));
    let error = dir.fails_at(&text, &format!("\"{label}"), 0, at);
    assert!(
        error
            .message
            .ends_with("has a label longer than 63 characters"),
        "{error}"
    );
}

#[test]
fn a_name_selects_one_certificate() {
    let dir = Dir::new("duplicates");
    let text = tls(&format!(
        "{API_CERTIFICATE}names = [\"api.example.com\", \"*.example.com\"]\n\n\
         [[listener.tls.certificate]]\ncert_file = \"certs/api.pem\"\nkey_file = \"certs/ec.key\"\n\
         names = [\"www.example.com\", \"*.EXAMPLE.com\"]\n"
    ));
    let error = dir.fails_at(
        &text,
        "\"*.EXAMPLE.com\"",
        0,
        "listener[0].tls.certificate[1].names[1]",
    );
    assert_eq!(
        error.message,
        "certificate[1] and certificate[0] both list *.example.com"
    );

    let text = certificate(
        "cert_file = \"certs/api.pem\"\nkey_file = \"certs/api.key\"\n\
         names = [\"api.example.com\", \"API.example.com\"]",
    );
    let error = dir.fails_at(
        &text,
        "\"API.example.com\"",
        0,
        "listener[0].tls.certificate[0].names[1]",
    );
    assert_eq!(
        error.message,
        "name api.example.com is listed twice (names are case-insensitive)"
    );
}

#[test]
fn at_most_one_certificate_is_the_default() {
    let dir = Dir::new("defaults");
    let text = tls(&format!(
        "{API_CERTIFICATE}default = true\n\n{API_CERTIFICATE}default = false\n\n\
         {API_CERTIFICATE}default = true\n"
    ));
    let error = dir.fails_at(&text, "true", 1, "listener[0].tls.certificate[2].default");
    assert_eq!(
        error.message,
        "certificate[2] and certificate[0] both say default = true"
    );
}

#[test]
fn a_tls_listener_needs_a_certificate() {
    let dir = Dir::new("no-certificate");
    let text = tls("versions = [\"1.3\"]");
    let error = dir.fails_at(&text, "[listener.tls]", 0, "listener[0].tls");
    assert_eq!(
        error.message,
        "[listener.tls] has no [[listener.tls.certificate]]"
    );
}

// ----- versions and handshake timeout -----

#[test]
fn versions_are_known_listed_once_and_not_empty() {
    let dir = Dir::new("versions");
    let at = "listener[0].tls.versions";
    let error = dir.fails_at(
        &tls(&format!("versions = []\n{API_CERTIFICATE}")),
        "[]",
        0,
        at,
    );
    assert_eq!(error.message, "versions is empty");
    for (written, hint) in [
        ("1.1", "TLS 1.0 and 1.1 are deprecated (RFC 8996)"),
        ("TLSv1.3", "write the bare number: \"1.3\""),
        ("1.4", "versions are \"1.2\" and \"1.3\""),
    ] {
        let text = tls(&format!(
            "versions = [\"1.2\", \"{written}\"]\n{API_CERTIFICATE}"
        ));
        let error = dir.fails_at(&text, &format!("\"{written}\""), 0, &format!("{at}[1]"));
        assert_eq!(
            error.message,
            format!("\"{written}\" is not a TLS version the gateway offers")
        );
        assert!(
            error.hint.as_deref().is_some_and(|h| h.starts_with(hint)),
            "{error}"
        );
    }
    let text = tls(&format!("versions = [\"1.3\", \"1.3\"]\n{API_CERTIFICATE}"));
    let error = dir.fails_at(&text, "\"1.3\"", 1, &format!("{at}[1]"));
    assert_eq!(error.message, "version 1.3 is listed twice");
    // A number instead of text is a schema error with a hint to quote it.
    let text = tls(&format!("versions = [1.3]\n{API_CERTIFICATE}"));
    let error = match dir.load(&text) {
        Ok(_) => panic!("accepted versions = [1.3]"),
        Err(error) => error,
    };
    assert_eq!(error.field, format!("{at}[0]"));
    assert!(error.hint.is_some(), "{error}");
}

#[test]
fn a_zero_handshake_timeout_is_rejected() {
    let dir = Dir::new("handshake");
    let text = tls(&format!("handshake_timeout_ms = 0\n{API_CERTIFICATE}"));
    let error = dir.fails_at(&text, "0\n", 0, "listener[0].tls.handshake_timeout_ms");
    assert_eq!(
        error.message,
        "handshake_timeout_ms = 0 would time out at once"
    );
}

// ----- redirects -----

#[test]
fn a_redirect_belongs_on_a_plain_listener() {
    let dir = Dir::new("redirect-on-tls");
    let text = tls(&format!(
        "{API_CERTIFICATE}\n[listener.redirect_https]\nport = 443\n"
    ));
    let error = dir.fails_at(
        &text,
        "[listener.redirect_https]",
        0,
        "listener[0].redirect_https",
    );
    assert_eq!(
        error.message,
        "a listener with [listener.tls] cannot also have [listener.redirect_https]"
    );
    assert_eq!(
        error.hint.as_deref(),
        Some(
            "the redirect belongs on the plain HTTP listener: move [listener.redirect_https] \
             under a [[listener]] without tls, and point its port at this one"
        )
    );
}

#[test]
fn redirect_values_are_checked() {
    let dir = Dir::new("redirect");
    let at = "listener[0].redirect_https";
    let error = dir.fails_at(&redirect("port = 0"), "0\n", 0, &format!("{at}.port"));
    assert_eq!(
        error.message,
        "port = 0 is not a port a client can connect to"
    );

    let error = match dir.load(&redirect("port = 65536")) {
        Ok(_) => panic!("accepted port 65536"),
        Err(error) => error,
    };
    assert_eq!(error.field, format!("{at}.port"));

    let error = match dir.load(&redirect("status = 308")) {
        Ok(_) => panic!("accepted a redirect without a port"),
        Err(error) => error,
    };
    assert!(error.message.contains("missing field `port`"), "{error}");

    for status in [300, 303, 200] {
        let text = redirect(&format!("port = 443\nstatus = {status}"));
        let error = dir.fails_at(&text, &status.to_string(), 0, &format!("{at}.status"));
        assert_eq!(
            error.message,
            format!("status = {status} is not a redirect status")
        );
    }
    for status in defaults::REDIRECT_HTTPS_STATUSES {
        let config = dir.loads(&redirect(&format!("port = 443\nstatus = {status}")));
        let redirect = config.listeners[0]
            .redirect_https
            .as_ref()
            .expect("redirect");
        assert_eq!(redirect.status, *status);
    }

    let prefixes = |list: &str| redirect(&format!("port = 443\nexcept_prefixes = {list}"));
    let error = dir.fails_at(
        &prefixes("[\"/ok\", \".well-known/\"]"),
        "\".well-known/\"",
        0,
        &format!("{at}.except_prefixes[1]"),
    );
    assert_eq!(
        error.message,
        "prefix \".well-known/\" does not start with `/`"
    );
    assert_eq!(
        error.hint.as_deref(),
        Some("prefixes are matched against the request path: write \"/.well-known/\"")
    );
    let error = dir.fails_at(
        &prefixes("[\"/a?b=1\"]"),
        "\"/a?b=1\"",
        0,
        &format!("{at}.except_prefixes[0]"),
    );
    assert_eq!(error.message, "prefix \"/a?b=1\" contains '?'");
    let error = dir.fails_at(
        &prefixes("[\"/a\", \"/a\"]"),
        "\"/a\"",
        1,
        &format!("{at}.except_prefixes[1]"),
    );
    assert_eq!(error.message, "prefix /a is listed twice");
    let many: Vec<String> = (0..=defaults::REDIRECT_EXCEPT_PREFIXES_MAX)
        .map(|i| format!("\"/p{i}\""))
        .collect();
    let text = prefixes(&format!("[{}]", many.join(", ")));
    let error = dir.fails_at(&text, "[\"/p0\"", 0, &format!("{at}.except_prefixes"));
    assert_eq!(
        error.message,
        format!(
            "except_prefixes has {} entries, more than {}",
            defaults::REDIRECT_EXCEPT_PREFIXES_MAX + 1,
            defaults::REDIRECT_EXCEPT_PREFIXES_MAX
        )
    );
}

// ----- upstream TLS -----

#[test]
fn upstream_server_name_is_a_dns_name_or_an_ip() {
    let dir = Dir::new("server-name");
    let at = "upstreams.secure.tls.server_name";
    for (bad, message) in [
        ("*.internal", "server_name \"*.internal\" has a wildcard"),
        ("[::1]", "server_name \"[::1]\" is a bracketed IPv6 address"),
        (
            "api.internal:443",
            "server_name \"api.internal:443\" includes a port",
        ),
        (
            "api.internal.",
            "server_name \"api.internal.\" ends with `.`",
        ),
        (
            "api internal",
            "server_name \"api internal\" contains ' ', which is not allowed in a host name",
        ),
        ("", "server_name is empty"),
    ] {
        let text = upstream_tls(&format!("server_name = \"{bad}\""));
        let error = dir.fails_at(&text, &format!("\"{bad}\""), 0, at);
        assert_eq!(error.message, message);
    }
}

#[test]
fn unknown_keys_in_tls_tables_are_rejected() {
    let dir = Dir::new("unknown-keys");
    for (text, key) in [
        (tls(&format!("ciphers = []\n{API_CERTIFICATE}")), "ciphers"),
        (
            certificate(
                "cert_file = \"certs/api.pem\"\nkey_file = \"certs/api.key\"\nchain = \"x\"",
            ),
            "chain",
        ),
        (redirect("port = 443\nhost = \"x\""), "host"),
        (upstream_tls("sni = \"x\""), "sni"),
    ] {
        let error = match dir.load(&text) {
            Ok(_) => panic!("accepted `{key}`:\n{text}"),
            Err(error) => error,
        };
        assert!(
            error.message.contains(&format!("unknown field `{key}`")),
            "{error}"
        );
        assert!(error.line > 0 && error.hint.is_some(), "{error}");
    }
}

#[test]
fn files_are_read_relative_to_the_config_files_directory_only() {
    // Loading the same text from another directory looks for the files there.
    let dir = Dir::new("relative");
    let other = Dir::new("relative-other");
    let text = tls(API_CERTIFICATE);
    dir.loads(&text);
    std::fs::remove_file(other.0.join("certs/api.pem")).expect("remove");
    let error = match other.load(&text) {
        Ok(_) => panic!("read another directory's file"),
        Err(error) => error,
    };
    assert!(
        error.message.contains(
            &Path::new(&other.0)
                .join("certs/api.pem")
                .display()
                .to_string()
        ),
        "{error}"
    );
}

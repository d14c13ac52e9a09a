//! Finding and loading plugin libraries.
//!
//! `use NAME` loads `libmer_plugin_NAME.so` from, in order: each folder of
//! `MER_PLUGIN_PATH`, the folder of the running executable (cargo's target
//! folder for a `cargo build`), and `~/.mer/plugins`. With
//! `MER_PLUGIN_PATH_ONLY=1`, only `MER_PLUGIN_PATH` is searched. Loaded libraries are
//! never unloaded: objects they made (kinds, components, fn pointers) may be
//! alive until the process exits, and calling into an unloaded library
//! crashes.

use crate::plugin::{
    PluginHeader, Registrar, ABI_VERSION, MAGIC, RUSTC_VERSION, SDK_BUILD_ID, SDK_VERSION,
};
use crate::{Kind, PluginInfo, Registry, RegistryError};
use std::ffi::{c_void, CStr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Every library ever loaded. A static is never dropped, so nothing here is
/// ever `dlclose`d.
static LOADED: Mutex<Vec<libloading::Library>> = Mutex::new(Vec::new());

/// Why a plugin was not loaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PluginError {
    /// No folder of the search path holds the plugin's library.
    #[error("plugin `{name}` not found; searched {searched}; found: {found}")]
    NotFound {
        /// The plugin name, as in `use NAME`.
        name: String,
        /// The folders searched, in order, comma-separated.
        searched: String,
        /// The plugin names available in those folders, comma-separated, or `none`.
        found: String,
    },
    /// The library at `path` could not be opened (missing, truncated, not a
    /// shared library, or refused by the dynamic loader); `reason` says why.
    #[error("cannot load `{path}`: {reason}")]
    Open {
        /// The library file.
        path: String,
        /// The dynamic loader's message.
        reason: String,
    },
    /// The dynamic loader found Rust symbols that this SDK no longer has: the
    /// plugin was built against another build of the SDK and must be rebuilt.
    #[error("`{path}` was built against another build of the mer SDK ({reason}); {rebuild}")]
    Stale {
        /// The library file, as shown in messages.
        path: String,
        /// The dynamic loader's message, naming the undefined Rust symbol.
        reason: String,
        /// How to rebuild the plugin: with the whole workspace, on the same
        /// toolchain, lockfile and profile as mer.
        rebuild: String,
    },
    /// The library at `path` exports no `MER_PLUGIN` symbol: it was not
    /// declared with [`export_plugin!`](crate::export_plugin).
    #[error("`{path}` is not a mer plugin: it exports no `MER_PLUGIN` declaration")]
    NotAPlugin {
        /// The library file.
        path: String,
    },
    /// The `MER_PLUGIN` symbol does not start with
    /// [`MAGIC`](crate::plugin::MAGIC), so it is not a mer plugin header.
    #[error("`{path}` is not a mer plugin: bad magic {found:?} (expected {expected:?})")]
    BadMagic {
        /// The library file, as shown in messages.
        path: String,
        /// The first eight bytes of the symbol, decoded lossily as UTF-8.
        found: String,
        /// [`MAGIC`](crate::plugin::MAGIC) as text.
        expected: String,
    },
    /// The plugin declares another plugin ABI version than this build's
    /// [`ABI_VERSION`](crate::plugin::ABI_VERSION).
    #[error("`{path}` was built for plugin ABI {plugin}, this mer speaks ABI {host}; {rebuild}")]
    Abi {
        /// The library file, as shown in messages.
        path: String,
        /// The ABI version the plugin declares.
        plugin: u32,
        /// This build's ABI version.
        host: u32,
        /// How to rebuild the plugin: with the whole workspace, on the same
        /// toolchain, lockfile and profile as mer.
        rebuild: String,
    },
    /// The plugin's header differs in size from this build's
    /// [`PluginHeader`](crate::plugin::PluginHeader), so its layout differs too.
    #[error("`{path}` declares a {plugin}-byte header, this mer expects {host} bytes; {rebuild}")]
    HeaderSize {
        /// The library file, as shown in messages.
        path: String,
        /// The header size the plugin declares, in bytes.
        plugin: u32,
        /// This build's header size, in bytes.
        host: u32,
        /// How to rebuild the plugin: with the whole workspace, on the same
        /// toolchain, lockfile and profile as mer.
        rebuild: String,
    },
    /// The plugin was built by another Rust compiler; Rust has no stable ABI,
    /// so its types may be laid out differently.
    #[error("`{path}` was built by {plugin}, this mer by {host}; {rebuild}")]
    Rustc {
        /// The library file, as shown in messages.
        path: String,
        /// `rustc -V` of the compiler that built the plugin.
        plugin: String,
        /// `rustc -V` of the compiler that built this mer.
        host: String,
        /// How to rebuild the plugin: with the whole workspace, on the same
        /// toolchain, lockfile and profile as mer.
        rebuild: String,
    },
    /// The plugin was built against another version of the SDK crate.
    #[error("`{path}` was built against SDK {plugin}, this mer has SDK {host}; {rebuild}")]
    SdkVersion {
        /// The library file, as shown in messages.
        path: String,
        /// The SDK version the plugin was built against.
        plugin: String,
        /// This mer's SDK version.
        host: String,
        /// How to rebuild the plugin: with the whole workspace, on the same
        /// toolchain, lockfile and profile as mer.
        rebuild: String,
    },
    /// The plugin was built against another build of the same SDK version
    /// (sources, lockfile, features, profile or target differ), so layouts may differ.
    #[error("`{path}` was built against SDK build {plugin}, this mer is SDK build {host} (different SDK sources, lockfile, features, profile or target); {rebuild}")]
    BuildId {
        /// The library file, as shown in messages.
        path: String,
        /// The SDK build id compiled into the plugin.
        plugin: String,
        /// This mer's SDK build id.
        host: String,
        /// How to rebuild the plugin: with the whole workspace, on the same
        /// toolchain, lockfile and profile as mer.
        rebuild: String,
    },
    /// The library declares another plugin name than the one it was loaded as.
    #[error("`{path}` declares plugin `{declared}`, but was loaded as `{wanted}`")]
    Name {
        /// The library file, as shown in messages.
        path: String,
        /// The name in the library's header (the namespace it would register).
        declared: String,
        /// The name it was loaded as, e.g. from `use NAME`.
        wanted: String,
    },
    /// Plugin `name`'s `register` function reported a failure, panicked or
    /// returned non-zero; `message` says which and why.
    #[error("plugin `{name}` failed to register: {message}")]
    Register {
        /// The plugin's namespace.
        name: String,
        /// What its registration function reported.
        message: String,
    },
    /// The registry refused what plugin `name` registered (a kind outside its
    /// namespace, a duplicate or malformed name, a namespace that shadows a
    /// builtin one, or a factory that does not fit the role); `source` says which.
    #[error("plugin `{name}`: {source}")]
    Kinds {
        /// The plugin's namespace.
        name: String,
        /// Why the registry refused a kind.
        source: RegistryError,
    },
}

/// The rebuild command a refusal names. The whole workspace, not `-p
/// mer-plugin-<name>`: building one plugin after another plugin changed
/// `Cargo.lock` gives the SDK a new build id, and every other plugin is
/// then refused until they are all rebuilt together.
fn rebuild_hint(name: &str) -> String {
    format!(
        "rebuild it with the whole workspace, `cargo build --workspace` (plugin `{name}` is crate `mer-plugin-{}`; same toolchain, lockfile and profile as mer)",
        name.replace('_', "-")
    )
}

/// The file name a plugin called `name` has on this platform.
pub fn library_file_name(name: &str) -> String {
    format!(
        "{}mer_plugin_{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// The folders searched for plugins, in order.
pub fn search_path() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(p) = std::env::var_os("MER_PLUGIN_PATH") {
        dirs.extend(std::env::split_paths(&p).filter(|d| !d.as_os_str().is_empty()));
    }
    // Hermetic runs (tests, reproducible pipelines) look nowhere else.
    if std::env::var_os("MER_PLUGIN_PATH_ONLY").is_some_and(|v| !v.is_empty() && v != "0") {
        return dirs;
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            // In a cargo target folder, `deps/` is always at least as fresh
            // as the copies cargo uplifts next to the binary (`cargo test`
            // rebuilds libraries there without uplifting them).
            if dir.file_name().is_some_and(|n| n == "deps") {
                dirs.push(dir.to_path_buf());
                if let Some(up) = dir.parent() {
                    dirs.push(up.to_path_buf());
                }
            } else {
                let deps = dir.join("deps");
                if deps.is_dir() {
                    dirs.push(deps);
                }
                dirs.push(dir.to_path_buf());
            }
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".mer/plugins"));
    }
    dirs
}

/// Plugin names available in `dirs`, sorted.
pub fn available(dirs: &[PathBuf]) -> Vec<String> {
    let (pre, suf) = (
        format!("{}mer_plugin_", std::env::consts::DLL_PREFIX),
        std::env::consts::DLL_SUFFIX,
    );
    let mut names: Vec<String> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|rd| rd.flatten())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| {
            n.strip_prefix(&pre)
                .and_then(|r| r.strip_suffix(suf))
                .map(str::to_string)
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Finds the library of plugin `name`.
pub fn find(name: &str) -> Result<PathBuf, PluginError> {
    let dirs = search_path();
    let file = library_file_name(name);
    for d in &dirs {
        let p = d.join(&file);
        if p.is_file() {
            return Ok(p);
        }
    }
    let found = available(&dirs);
    Err(PluginError::NotFound {
        name: name.to_string(),
        searched: dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        found: if found.is_empty() {
            "none".into()
        } else {
            found.join(", ")
        },
    })
}

/// Reads a C string from a plugin header field.
///
/// # Safety
/// `p` must be null or point to a NUL-terminated string that lives as long
/// as the library (the header's fields are 'static in the plugin).
unsafe fn c_str(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: guaranteed by the caller.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

struct Collect {
    namespace: String,
    kinds: Vec<Kind>,
    failure: Option<String>,
}

impl Registrar for Collect {
    fn kind(&mut self, kind: Kind) {
        self.kinds.push(kind);
    }
    fn fail(&mut self, message: String) {
        self.failure.get_or_insert(message);
    }
}

/// Refuses files that are not complete shared libraries before `dlopen`
/// sees them: a segment cut short would be mapped past the end of the file
/// and fault (SIGBUS) on first touch instead of failing cleanly.
fn check_image(path: &Path) -> Result<(), String> {
    use object::{Object, ObjectSegment};
    let data = std::fs::read(path).map_err(|e| e.to_string())?;
    let file = object::File::parse(&*data).map_err(|e| format!("not a shared library ({e})"))?;
    let len = data.len() as u64;
    for seg in file.segments() {
        let (offset, size) = seg.file_range();
        if offset.saturating_add(size) > len {
            return Err(format!(
                "truncated: a segment needs bytes {offset}..{} but the file has {len}",
                offset + size
            ));
        }
    }
    Ok(())
}

/// Loads the library at `path` as plugin `wanted` into `registry`.
pub fn load(path: &Path, wanted: &str, registry: &mut Registry) -> Result<PluginInfo, PluginError> {
    let shown = path.display().to_string();
    check_image(path).map_err(|reason| PluginError::Open {
        path: shown.clone(),
        reason,
    })?;
    // SAFETY: loading a library runs its initialisers. mer plugins have none
    // beyond Rust's; a foreign library is refused below before any of its
    // symbols is called.
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| {
        // libloading's message is generic; the loader's own is in `source`.
        let reason = std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string());
        if reason.contains("undefined symbol: _ZN") || reason.contains("undefined symbol: _R") {
            // Rust symbols that the SDK no longer has: the plugin was built
            // against another build of the SDK. Rust libraries bind every
            // symbol at load time, so this shows before the header can.
            PluginError::Stale {
                path: shown.clone(),
                reason,
                rebuild: rebuild_hint(wanted),
            }
        } else {
            PluginError::Open {
                path: shown.clone(),
                reason,
            }
        }
    })?;
    let (h, name, version) = match handshake(&lib, &shown, wanted) {
        Ok(x) => x,
        Err(e) => {
            keep(lib);
            return Err(e);
        }
    };
    let mut collect = Collect {
        namespace: name.clone(),
        kinds: Vec::new(),
        failure: None,
    };
    let code = {
        let mut dynr: &mut dyn Registrar = &mut collect;
        let ptr = &mut dynr as *mut &mut dyn Registrar as *mut c_void;
        // SAFETY: the handshake established that the plugin was built by the
        // same compiler against this exact SDK build, so the trait object
        // layout matches. `register` catches its own panics.
        unsafe { (h.register)(ptr) }
    };
    keep(lib);
    if code != 0 || collect.failure.is_some() {
        return Err(PluginError::Register {
            name,
            message: collect
                .failure
                .unwrap_or_else(|| format!("register returned {code}")),
        });
    }
    let info = PluginInfo {
        name: collect.namespace.clone(),
        version,
    };
    registry
        .add_plugin(info.clone(), collect.kinds)
        .map_err(|source| PluginError::Kinds {
            name: info.name.clone(),
            source,
        })?;
    Ok(info)
}

/// Reads the plugin's header and compares every field with this build's;
/// nothing of the plugin is called. Returns the header, name and version.
fn handshake(
    lib: &libloading::Library,
    shown: &str,
    wanted: &str,
) -> Result<(&'static PluginHeader, String, String), PluginError> {
    let path = shown.to_string();
    // SAFETY: we only take the address of the symbol here.
    let header: *const PluginHeader =
        match unsafe { lib.get::<*const PluginHeader>(b"MER_PLUGIN\0") } {
            Ok(sym) => *sym,
            Err(_) => return Err(PluginError::NotAPlugin { path }),
        };
    let header = header as *const u8;
    // SAFETY: the symbol exists; its first 8 bytes are read and compared
    // with the magic before anything else is read.
    let magic: [u8; 8] = unsafe { std::ptr::read_unaligned(header as *const [u8; 8]) };
    if magic != MAGIC {
        return Err(PluginError::BadMagic {
            path,
            found: String::from_utf8_lossy(&magic).into_owned(),
            expected: String::from_utf8_lossy(&MAGIC).into_owned(),
        });
    }
    // SAFETY: the magic says this is a mer plugin header; the two fields
    // after the magic are u32 in every ABI version.
    let (abi, size) = unsafe {
        let p = header.add(8) as *const u32;
        (
            std::ptr::read_unaligned(p),
            std::ptr::read_unaligned(p.add(1)),
        )
    };
    let rebuild = rebuild_hint(wanted);
    if abi != ABI_VERSION {
        return Err(PluginError::Abi {
            path,
            plugin: abi,
            host: ABI_VERSION,
            rebuild,
        });
    }
    let host_size = std::mem::size_of::<PluginHeader>() as u32;
    if size != host_size {
        return Err(PluginError::HeaderSize {
            path,
            plugin: size,
            host: host_size,
            rebuild,
        });
    }
    // SAFETY: same ABI version and size: the layout is ours. The header is
    // a static of a library that is never unloaded, hence 'static.
    let h: &'static PluginHeader = unsafe { &*(header as *const PluginHeader) };
    // SAFETY: header string fields point to 'static C strings in the plugin.
    let (rustc, sdk, build, name, version) = unsafe {
        (
            c_str(h.rustc),
            c_str(h.sdk_version),
            c_str(h.build_id),
            c_str(h.name),
            c_str(h.version),
        )
    };
    if rustc != RUSTC_VERSION {
        return Err(PluginError::Rustc {
            path,
            plugin: rustc,
            host: RUSTC_VERSION.into(),
            rebuild,
        });
    }
    if sdk != SDK_VERSION {
        return Err(PluginError::SdkVersion {
            path,
            plugin: sdk,
            host: SDK_VERSION.into(),
            rebuild,
        });
    }
    if build != SDK_BUILD_ID {
        return Err(PluginError::BuildId {
            path,
            plugin: build,
            host: SDK_BUILD_ID.into(),
            rebuild,
        });
    }
    if name != wanted {
        return Err(PluginError::Name {
            path,
            declared: name,
            wanted: wanted.into(),
        });
    }
    Ok((h, name, version))
}

fn keep(lib: libloading::Library) {
    match LOADED.lock() {
        Ok(mut v) => v.push(lib),
        // A poisoned lock only means another thread panicked while pushing;
        // leaking is the safe fallback.
        Err(_) => std::mem::forget(lib),
    }
}

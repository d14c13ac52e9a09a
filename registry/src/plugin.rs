//! The plugin declaration and handshake.
//!
//! Rust has no stable ABI, so a plugin is trusted only if it was built by
//! the same compiler against the same SDK build as the host. Every plugin
//! exports one C-layout static, `MER_PLUGIN` (write it with
//! [`export_plugin!`](crate::export_plugin)); the host reads its fixed
//! header, compares every field with its own, and only then calls
//! `register`. `register` catches panics, so a faulty plugin is an error,
//! never a crash.
//!
//! ```ignore
//! use mer_registry::{export_plugin, plugin::Registrar};
//!
//! pub fn register(r: &mut dyn Registrar) {
//!     // r.kind(KindBuilder::new("my_paper.block", Role::Component)...build());
//! }
//! export_plugin!("my_paper", register);
//! ```

use crate::Kind;
use std::ffi::{c_char, c_void, CStr};

include!(concat!(env!("OUT_DIR"), "/build_info.rs"));

/// First eight bytes of every plugin declaration.
pub const MAGIC: [u8; 8] = *b"MERPLUG1";

/// Version of the [`PluginHeader`] layout and of the `register` protocol.
pub const ABI_VERSION: u32 = 1;

/// The SDK crate version.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// [`RUSTC_VERSION`] as a C string, compiled into each plugin.
pub const RUSTC_VERSION_C: &CStr = RUSTC_VERSION_CSTR;
/// [`SDK_VERSION`] as a C string.
pub const SDK_VERSION_C: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(c) => c,
        Err(_) => c"invalid",
    };
/// [`SDK_BUILD_ID`] as a C string.
pub const SDK_BUILD_ID_C: &CStr = SDK_BUILD_ID_CSTR;

/// The C-layout declaration a plugin exports as `MER_PLUGIN`.
///
/// The host reads `magic` first and stops if it differs, so the rest of the
/// layout may change with `abi_version`.
#[repr(C)]
pub struct PluginHeader {
    /// Always [`MAGIC`]; the host reads it first and refuses the symbol if it
    /// differs, before reading anything else.
    pub magic: [u8; 8],
    /// The [`ABI_VERSION`] the plugin was built with; it must equal the host's
    /// before the rest of the header is trusted.
    pub abi_version: u32,
    /// `size_of::<PluginHeader>()` as the plugin saw it.
    pub header_size: u32,
    /// NUL-terminated `rustc -V` of the compiler that built the plugin
    /// ([`RUSTC_VERSION_C`]); must equal the host's.
    pub rustc: *const c_char,
    /// NUL-terminated SDK crate version the plugin was built against
    /// ([`SDK_VERSION_C`]); must equal the host's.
    pub sdk_version: *const c_char,
    /// NUL-terminated SDK build id ([`SDK_BUILD_ID_C`]), a hash of the SDK
    /// sources, lockfile, features, profile and target; must equal the host's.
    pub build_id: *const c_char,
    /// The namespace the plugin owns (its `use` name).
    pub name: *const c_char,
    /// The plugin crate's version.
    pub version: *const c_char,
    /// Registers the plugin's kinds. Receives a `*mut &mut dyn Registrar`.
    /// Returns 0 on success, 1 if the plugin reported a failure, 2 if it
    /// panicked (the message went to the registrar).
    pub register: unsafe extern "C" fn(*mut c_void) -> i32,
}

// SAFETY: the header holds pointers to immutable, 'static C strings and a
// function pointer; sharing them between threads is sound.
unsafe impl Sync for PluginHeader {}

/// What a plugin's `register` function talks to.
pub trait Registrar {
    /// Adds one kind; its name must start with the plugin's namespace.
    fn kind(&mut self, kind: Kind);
    /// Reports a failure; loading stops with this message.
    fn fail(&mut self, message: String);
}

/// Runs a plugin's register function behind the C boundary, turning panics
/// into a reported failure. Called by the code [`export_plugin!`] generates.
///
/// # Safety
/// `registrar` must be the `*mut &mut dyn Registrar` the host passed.
pub unsafe fn run_register(registrar: *mut c_void, f: fn(&mut dyn Registrar)) -> i32 {
    if registrar.is_null() {
        return 1;
    }
    // SAFETY: the host passes a valid `*mut &mut dyn Registrar` that lives
    // for the duration of this call (see `loader::load_plugin`).
    let r: &mut &mut dyn Registrar = unsafe { &mut *(registrar as *mut &mut dyn Registrar) };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut **r))) {
        Ok(()) => 0,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic with a non-string payload".into());
            r.fail(format!("panicked: {msg}"));
            2
        }
    }
}

/// Declares a plugin: `export_plugin!("namespace", register_fn);`
///
/// `register_fn: fn(&mut dyn Registrar)` adds the plugin's kinds. The macro
/// writes the `MER_PLUGIN` header with this SDK's magic, ABI version, rustc
/// version and build id, which the host checks before calling anything.
#[macro_export]
macro_rules! export_plugin {
    ($name:literal, $register:path) => {
        #[doc(hidden)]
        unsafe extern "C" fn __mer_plugin_register(registrar: *mut ::core::ffi::c_void) -> i32 {
            // SAFETY: forwarded from the host, which passes a valid registrar.
            unsafe { $crate::plugin::run_register(registrar, $register) }
        }

        /// The plugin declaration read by mer's loader.
        #[unsafe(no_mangle)]
        pub static MER_PLUGIN: $crate::plugin::PluginHeader = $crate::plugin::PluginHeader {
            magic: $crate::plugin::MAGIC,
            abi_version: $crate::plugin::ABI_VERSION,
            header_size: ::core::mem::size_of::<$crate::plugin::PluginHeader>() as u32,
            rustc: $crate::plugin::RUSTC_VERSION_C.as_ptr(),
            sdk_version: $crate::plugin::SDK_VERSION_C.as_ptr(),
            build_id: $crate::plugin::SDK_BUILD_ID_C.as_ptr(),
            name: concat!($name, "\0").as_ptr() as *const ::core::ffi::c_char,
            version: concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr()
                as *const ::core::ffi::c_char,
            register: __mer_plugin_register,
        };
    };
}

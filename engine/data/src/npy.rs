//! NumPy's `.npy` files (format versions 1–3), read and written without
//! Python: Face-LLaVA ships its per-frame landmarks as `.npy` arrays, and
//! `mer data synth` writes generated landmarks the same way.
//!
//! Read: little-endian `f2`/`f4`/`f8`/`i4`/`i8`/`u1` in C order, as values
//! of f32. Anything else (Fortran order, big-endian, objects, structured
//! dtypes) is an error naming the file and what it holds, never a guess.

use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

/// An array read from a `.npy` file: its shape and its values as f32, in
/// C order.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// The shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values, row-major.
    pub data: Vec<f32>,
}

/// Reads `path`; every failure names the file.
pub fn read(path: &Path) -> Result<Array, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("`{}`: cannot read: {e}", path.display()))?;
    parse(&bytes).map_err(|e| format!("`{}`: {e}", path.display()))
}

/// Parses the bytes of a `.npy` file.
pub fn parse(bytes: &[u8]) -> Result<Array, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a NumPy .npy file (no \\x93NUMPY magic)".into());
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => {
            return Err(format!(
                ".npy format version {v} is not one mer reads (1–3)"
            ))
        }
    };
    let header = bytes
        .get(start..start + len)
        .ok_or("the header is cut short")?;
    let header = std::str::from_utf8(header).map_err(|_| "the header is not text")?;
    let descr = field(header, "descr").ok_or("the header has no `descr`")?;
    let descr = descr.trim().trim_matches(|c| c == '\'' || c == '"');
    if field(header, "fortran_order").is_some_and(|f| f.trim() == "True") {
        return Err("the array is in Fortran order; save it with np.ascontiguousarray".into());
    }
    let shape = shape_of(header)?;
    // A header is user input: a shape whose size overflows is an error,
    // not a panic.
    let too_big = || format!("the header's shape {shape:?} is too large");
    let n = shape
        .iter()
        .try_fold(1usize, |a, d| a.checked_mul(*d))
        .ok_or_else(too_big)?;
    let body = &bytes[start + len..];
    let (width, read): (usize, fn(&[u8]) -> f32) = match descr {
        "<f4" => (4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        "<f8" => (8, |b| {
            f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
        }),
        "<f2" => (2, |b| half(u16::from_le_bytes([b[0], b[1]]))),
        "<i4" => (4, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32),
        "<i8" => (8, |b| {
            i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
        }),
        "|u1" | "<u1" => (1, |b| b[0] as f32),
        other => {
            return Err(format!(
                "dtype `{other}` is not one mer reads (little-endian f2, f4, f8, i4, i8 or u1)"
            ))
        }
    };
    let bytes_needed = n.checked_mul(width).ok_or_else(too_big)?;
    if body.len() < bytes_needed {
        return Err(format!(
            "the header says shape {shape:?} ({n} values of {width} bytes) but the file holds {} bytes of data",
            body.len()
        ));
    }
    let data = body[..bytes_needed].chunks_exact(width).map(read).collect();
    Ok(Array { shape, data })
}

/// IEEE half to f32 (subnormals included).
fn half(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f32;
    sign * match exp {
        0 => frac * 2f32.powi(-24),
        31 if frac == 0.0 => f32::INFINITY,
        31 => f32::NAN,
        e => (1.0 + frac / 1024.0) * 2f32.powi(e - 15),
    }
}

/// The text after `'key':` in a header dict, up to the next top-level
/// comma (the shape's tuple kept whole).
fn field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[at + key.len() + 2..];
    let rest = rest[rest.find(':')? + 1..].trim_start();
    let mut depth = 0;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(&rest[..i]),
            _ => {}
        }
    }
    Some(rest)
}

fn shape_of(header: &str) -> Result<Vec<usize>, String> {
    let s = field(header, "shape").ok_or("the header has no `shape`")?;
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("cannot read the shape `{s}`"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.trim_end_matches('L')
                .parse()
                .map_err(|_| format!("cannot read the shape `{s}`"))
        })
        .collect()
}

/// Writes `data` with `shape` as a version-1 little-endian f32 `.npy`.
pub fn write(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), String> {
    let n: usize = shape.iter().product();
    if n != data.len() {
        return Err(format!(
            "`{}`: shape {shape:?} needs {n} values, got {}",
            path.display(),
            data.len()
        ));
    }
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    // NumPy pads the header with spaces to a multiple of 64, ending in \n.
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * n);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, out).map_err(|e| format!("`{}`: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `np.save` of `np.arange(6, dtype='<f8').reshape(2, 3)`, byte for byte.
    fn numpy_f8() -> Vec<u8> {
        let mut header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }".to_string();
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[1, 0]);
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        for i in 0..6 {
            b.extend_from_slice(&(i as f64).to_le_bytes());
        }
        b
    }

    #[test]
    fn reads_numpy_float64_and_round_trips_float32() {
        let a = parse(&numpy_f8()).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, vec![0., 1., 2., 3., 4., 5.]);
        let p = std::env::temp_dir().join(format!("mer-npy-{}.npy", std::process::id()));
        write(
            &p,
            &[3, 68, 2],
            &(0..408).map(|i| i as f32 * 0.5).collect::<Vec<_>>(),
        )
        .unwrap();
        let b = read(&p).unwrap();
        assert_eq!(b.shape, vec![3, 68, 2]);
        assert_eq!(b.data[407], 203.5);
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!((bytes.len() - 408 * 4) % 64, 0, "header not padded to 64");
        let _ = std::fs::remove_file(p);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        assert!(parse(b"PK\x03\x04 zip").unwrap_err().contains("magic"));
        let mut short = numpy_f8();
        short.truncate(short.len() - 8);
        assert!(parse(&short).unwrap_err().contains("holds 40 bytes"));
        let mut b = numpy_f8();
        let h = b.windows(5).position(|w| w == b"False").unwrap();
        b[h..h + 5].copy_from_slice(b"True ");
        assert!(parse(&b).unwrap_err().contains("Fortran"));
        // A shape whose size overflows, written over the dict and its
        // padding so the header keeps its length.
        let mut b = numpy_f8();
        let end = b.iter().position(|c| *c == b'\n').unwrap();
        let huge =
            "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999, 99999999999, 9), }";
        let mut h = huge.as_bytes().to_vec();
        h.resize(end - 10, b' ');
        b[10..end].copy_from_slice(&h);
        assert!(parse(&b).unwrap_err().contains("too large"));
        assert_eq!(half(0x3c00), 1.0);
        assert_eq!(half(0xc000), -2.0);
    }
}

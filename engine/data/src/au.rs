//! One grammar for FACS action-unit cells as the label files write them:
//! `4+L10`, `AU4 + R12C`, `1+2`, `R14A`, numeric cells (`14`, or `14.0`
//! from a spreadsheet reader), `B1` (bilateral), `17(k)`.
//!
//! Anything else (`?`, `or`, `/`, `4.5`) is an error naming the cell, so a
//! dataset's correction table decides, never a digit-stripping guess (MEB's
//! `_only_digit` turns a float-read `12.0` into AU120).

/// One coded action unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AuCode {
    /// The FACS action-unit number, e.g. 12 for AU12 (lip corner puller).
    pub au: u32,
    /// `L`, `R` or `B` when the coder marked a side.
    pub side: Option<char>,
    /// FACS intensity `A`..`E` when coded.
    pub intensity: Option<char>,
}

/// Parses a text cell. An empty cell means "no AU coded".
pub fn parse_aus(cell: &str) -> Result<Vec<AuCode>, String> {
    let cell = cell.trim();
    if cell.is_empty() {
        return Ok(vec![]);
    }
    let mut out = Vec::new();
    for raw in cell.split('+') {
        out.push(parse_token(raw.trim()).map_err(|e| format!("AU cell `{cell}`: {e}"))?);
    }
    out.sort();
    out.dedup_by_key(|c| (c.au, c.side));
    Ok(out)
}

/// Parses a numeric cell: only whole numbers are AUs.
pub fn parse_numeric_au(x: f64) -> Result<Vec<AuCode>, String> {
    if x.fract() == 0.0 && (1.0..=99.0).contains(&x) {
        Ok(vec![AuCode {
            au: x as u32,
            side: None,
            intensity: None,
        }])
    } else {
        Err(format!("AU cell {x} is not a whole AU number"))
    }
}

fn parse_token(t: &str) -> Result<AuCode, String> {
    let mut s = t;
    if let Some(rest) = s.strip_prefix("AU").or_else(|| s.strip_prefix("au")) {
        s = rest.trim_start();
    }
    let mut side = None;
    if let Some(c) = s
        .chars()
        .next()
        .filter(|c| matches!(c, 'L' | 'R' | 'B' | 'l' | 'r' | 'b'))
    {
        side = Some(c.to_ascii_uppercase());
        s = s[1..].trim_start();
    }
    let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() || digits.len() > 2 {
        return Err(format!(
            "`{t}` is not an AU (expected e.g. 4, L10, AU12, R14A)"
        ));
    }
    let mut rest = &s[digits.len()..];
    let mut intensity = None;
    if let Some(c) = rest
        .chars()
        .next()
        .filter(|c| matches!(c, 'A'..='E' | 'a'..='e'))
    {
        intensity = Some(c.to_ascii_uppercase());
        rest = &rest[1..];
    }
    let rest = rest.trim();
    if !(rest.is_empty() || rest == "(k)") {
        return Err(format!("`{t}` has trailing `{rest}`"));
    }
    let au: u32 = digits.parse().map_err(|_| format!("`{t}`: bad number"))?;
    if au == 0 {
        return Err(format!("`{t}`: there is no AU0"));
    }
    Ok(AuCode {
        au,
        side,
        intensity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aus(s: &str) -> Vec<u32> {
        parse_aus(s).unwrap().iter().map(|c| c.au).collect()
    }

    #[test]
    fn the_forms_label_files_use() {
        assert_eq!(aus("4+L10"), [4, 10]);
        assert_eq!(aus("AU4 + R12C"), [4, 12]);
        assert_eq!(aus("1+2"), [1, 2]);
        assert_eq!(aus("R14A"), [14]);
        assert_eq!(aus("B1+17(k)"), [1, 17]);
        assert_eq!(aus(""), Vec::<u32>::new());
        let c = parse_aus("L12C").unwrap()[0];
        assert_eq!((c.side, c.intensity), (Some('L'), Some('C')));
    }

    #[test]
    fn numeric_cells_are_integers_not_digit_strings() {
        assert_eq!(parse_numeric_au(12.0).unwrap()[0].au, 12, "not AU120");
        assert!(parse_numeric_au(4.5).is_err());
    }

    #[test]
    fn anything_else_is_an_error_naming_the_cell() {
        for bad in ["?", "4 or 5", "4/5", "123", "AU", "12X", "0"] {
            let e = parse_aus(bad).unwrap_err();
            assert!(e.contains("AU cell"), "{bad}: {e}");
        }
    }
}

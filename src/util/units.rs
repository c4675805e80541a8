//! Units that operators type: byte sizes (`512MiB`, `2GiB`) and CPU lists (`0,2-3`).
//!
//! The broker's configuration, `sluice tune` and `sluice iotune` all accept the same
//! spellings, so they parse them here, once. Errors are plain sentences without the setting's
//! name; callers add which flag, key or file the text came from.

/// Bytes in one KiB; sizes in flags and files use binary units.
pub const KIB_BYTES: u64 = 1024;
/// Bytes in one MiB.
pub const MIB_BYTES: u64 = 1024 * KIB_BYTES;
/// Bytes in one GiB.
pub const GIB_BYTES: u64 = 1024 * MIB_BYTES;

/// Largest CPU id accepted in a cpuset, matching the kernel's `cpu_set_t` (CPU_SETSIZE).
pub const CPU_ID_MAX: usize = 1023;
/// Parses a Linux cpu list such as `0,2-3` into sorted, deduplicated CPU ids.
pub fn parse_cpuset(text: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!(
                "empty entry in CPU list {text:?} (expected e.g. 0,2-3)"
            ));
        }
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (parse_cpu_id(a)?, parse_cpu_id(b)?),
            None => (parse_cpu_id(part)?, parse_cpu_id(part)?),
        };
        if first > last {
            return Err(format!("range {part:?} runs backwards"));
        }
        cpus.extend(first..=last);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

fn parse_cpu_id(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let id: usize = text
        .parse()
        .map_err(|_| format!("{text:?} is not a CPU id (expected e.g. 0,2-3)"))?;
    if id > CPU_ID_MAX {
        return Err(format!("CPU {id} is above the largest CPU id {CPU_ID_MAX}"));
    }
    Ok(id)
}

/// Formats CPU ids as a compact cpu list (`0-3,6`), the inverse of [`parse_cpuset`].
pub fn format_cpuset(cpus: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    if parts.is_empty() {
        return "none".into();
    }
    parts.join(",")
}

/// Parses a byte size: `1073741824`, `512MiB`, `2GiB`, `64k`, `1 GB`. Binary units (KiB, MiB,
/// GiB, TiB and bare K, M, G, T) are powers of 1024; KB, MB, GB, TB are powers of 1000.
pub fn parse_size_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let unit = unit.trim();
    if digits.is_empty() {
        return Err(format!(
            "{text:?} is not a size (expected e.g. 512MiB, 2GiB or 1073741824)"
        ));
    }
    if unit.starts_with('.') {
        return Err("fractional sizes are not supported; use a smaller unit (e.g. 1536MiB)".into());
    }
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => KIB_BYTES,
        "m" | "mib" => MIB_BYTES,
        "g" | "gib" => GIB_BYTES,
        "t" | "tib" => 1024 * GIB_BYTES,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "tb" => 1000 * 1000 * 1000 * 1000,
        _ => {
            return Err(format!(
                "unknown size unit {unit:?} (use B, KiB, MiB, GiB, TiB, or KB, MB, GB, TB)"
            ))
        }
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{digits:?} is too large"))?;
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuset_parsing() {
        assert_eq!(parse_cpuset("0,2-3").unwrap(), vec![0, 2, 3]);
        assert_eq!(parse_cpuset("4-6").unwrap(), vec![4, 5, 6]);
        assert_eq!(parse_cpuset("3,1,1,0-2").unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(parse_cpuset(" 1 , 2 ").unwrap(), vec![1, 2]);
        for bad in ["", "1,", "a", "1-", "-1", "3-1", "1-2-3", "0x1", "5000"] {
            assert!(parse_cpuset(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(format_cpuset(&[0, 1, 2, 4, 6, 7]), "0-2,4,6-7");
        assert_eq!(format_cpuset(&[]), "none");
    }

    #[test]
    fn size_parsing() {
        assert_eq!(parse_size_bytes("1073741824").unwrap(), 1 << 30);
        assert_eq!(parse_size_bytes("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size_bytes("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size_bytes("2 gib").unwrap(), 2 << 30);
        assert_eq!(parse_size_bytes("64k").unwrap(), 64 << 10);
        assert_eq!(parse_size_bytes("1GB").unwrap(), 1_000_000_000);
        assert_eq!(parse_size_bytes("7B").unwrap(), 7);
        for bad in [
            "",
            "MiB",
            "1.5GiB",
            "12XB",
            "-1",
            "99999999999999999999",
            "16777216TiB",
        ] {
            assert!(parse_size_bytes(bad).is_err(), "{bad:?} accepted");
        }
    }
}

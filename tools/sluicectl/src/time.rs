//! RFC 3339 timestamps ↔ milliseconds since the Unix epoch, without a date-time dependency
//! (the tool needs exactly this and nothing more).

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn num(s: &str, what: &str) -> Result<i64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad {what} {s:?}"));
    }
    s.parse::<i64>().map_err(|_| format!("bad {what} {s:?}"))
}

/// Parse `2024-05-01T12:30:00Z`, `2024-05-01T12:30:00.250+02:00` (a space may replace `T`)
/// into milliseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let err =
        |why: String| format!("invalid RFC 3339 time {s:?}: {why} (e.g. 2024-05-01T12:30:00Z)");
    let s = s.trim();
    if s.len() < 20 || !s.is_ascii() {
        return Err(err("too short".into()));
    }
    let (date, rest) = s.split_at(10);
    let sep = rest.as_bytes()[0];
    if !matches!(sep, b'T' | b't' | b' ') {
        return Err(err("expected 'T' between date and time".into()));
    }
    let rest = &rest[1..];
    let dparts: Vec<&str> = date.split('-').collect();
    if dparts.len() != 3 {
        return Err(err("date must be YYYY-MM-DD".into()));
    }
    let (y, mo, d) = (
        num(dparts[0], "year").map_err(err)?,
        num(dparts[1], "month").map_err(err)?,
        num(dparts[2], "day").map_err(err)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return Err(err("month or day out of range".into()));
    }
    if rest.len() < 8 {
        return Err(err("time must be HH:MM:SS".into()));
    }
    let (hms, mut tail) = rest.split_at(8);
    let tparts: Vec<&str> = hms.split(':').collect();
    if tparts.len() != 3 {
        return Err(err("time must be HH:MM:SS".into()));
    }
    let (h, mi, sec) = (
        num(tparts[0], "hour").map_err(err)?,
        num(tparts[1], "minute").map_err(err)?,
        num(tparts[2], "second").map_err(err)?,
    );
    if h > 23 || mi > 59 || sec > 60 {
        return Err(err("time out of range".into()));
    }
    let mut millis = 0;
    if let Some(frac) = tail.strip_prefix('.') {
        let n = frac.bytes().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 {
            return Err(err("empty fraction".into()));
        }
        let digits = &frac[..n];
        let mut ms = String::from(&digits[..n.min(3)]);
        while ms.len() < 3 {
            ms.push('0');
        }
        millis = num(&ms, "fraction").map_err(err)?;
        tail = &frac[n..];
    }
    let offset_min = match tail {
        "Z" | "z" => 0,
        t if t.len() == 6 && (t.starts_with('+') || t.starts_with('-')) && &t[3..4] == ":" => {
            let oh = num(&t[1..3], "offset hour").map_err(err)?;
            let om = num(&t[4..6], "offset minute").map_err(err)?;
            let v = oh * 60 + om;
            if t.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return Err(err("expected 'Z' or an offset like +02:00".into())),
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Ok(secs * 1000 + millis)
}

/// Format milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            parse_rfc3339("2024-05-01T12:30:00.25Z").unwrap(),
            1_714_566_600_250
        );
        assert_eq!(
            parse_rfc3339("2024-05-01T14:30:00+02:00").unwrap(),
            1_714_566_600_000
        );
        assert_eq!(
            format_rfc3339(1_714_566_600_250),
            "2024-05-01T12:30:00.250Z"
        );
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert!(parse_rfc3339("2024-05-01").is_err());
        assert!(parse_rfc3339("2024-13-01T00:00:00Z").is_err());
        assert!(parse_rfc3339("2024-05-01T00:00:00").is_err());
    }
}

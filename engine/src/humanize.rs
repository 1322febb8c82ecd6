//! Sizes and durations the way the docker CLI prints them (go-units): `4.26MB`, `About an hour ago`.

/// Decimal size with three significant digits: `0B`, `855kB`, `4.26MB`, `1.24GB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    let mut s = format!("{value:.digits$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    format!("{s}{}", UNITS[unit])
}

/// A past duration in words, as `docker ps`/`images` show it (without the trailing "ago").
pub fn duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    match secs {
        s if s < 1 => "Less than a second".to_owned(),
        1 => "1 second".to_owned(),
        s if s < 60 => format!("{s} seconds"),
        _ if m == 1 => "About a minute".to_owned(),
        _ if m < 60 => format!("{m} minutes"),
        _ if h == 1 => "About an hour".to_owned(),
        _ if h < 48 => format!("{h} hours"),
        _ if h < 24 * 7 * 2 => format!("{d} days"),
        _ if h < 24 * 30 * 2 => format!("{} weeks", d / 7),
        _ if h < 24 * 365 * 2 => format!("{} months", d / 30),
        _ => format!("{} years", d / 365),
    }
}

/// "5 minutes ago" for an RFC 3339 timestamp; empty when it cannot be read.
pub fn since(rfc3339: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => format!("{} ago", duration((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds())),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_go_units() {
        assert_eq!(size(0), "0B");
        assert_eq!(size(999), "999B");
        assert_eq!(size(855_000), "855kB");
        assert_eq!(size(4_261_000), "4.26MB");
        assert_eq!(size(1_240_000_000), "1.24GB");
        assert_eq!(size(12_300_000), "12.3MB");
    }

    #[test]
    fn durations_like_go_units() {
        assert_eq!(duration(0), "Less than a second");
        assert_eq!(duration(59), "59 seconds");
        assert_eq!(duration(60), "About a minute");
        assert_eq!(duration(3600), "About an hour");
        assert_eq!(duration(3 * 86400), "3 days");
    }
}

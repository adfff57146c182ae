//! Domain newtypes and values parsed at the edge: past parsing, an invalid value cannot exist.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// An app's public identifier: 3 to 32 characters of lowercase ASCII letters,
/// digits and `-`, starting with a letter and not ending with `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AppId(String);

impl AppId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for AppId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid_chars = s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let starts_with_letter = s.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
        if !(3..=32).contains(&s.len()) || !valid_chars || !starts_with_letter || s.ends_with('-') {
            return Err(format!(
                "invalid appid {s:?}: use 3 to 32 lowercase letters, digits or '-', \
                 starting with a letter and not ending with '-'"
            ));
        }
        Ok(AppId(s.to_string()))
    }
}

impl<'de> Deserialize<'de> for AppId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The sha256 of an uploaded component: its content address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Sha256Digest(Sha256::digest(bytes).into())
    }
}

impl FromStr for Sha256Digest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| format!("invalid sha256 {s:?}"))?;
        Ok(Sha256Digest(out))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// The UTC day, counted from the unix epoch, of a unix time in milliseconds.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// `YYYY-MM-DD` of a day since the unix epoch.
pub fn day_name(day: i64) -> String {
    // Howard Hinnant's civil-from-days.
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The day since the unix epoch of `YYYY-MM-DD`.
pub fn parse_day(name: &str) -> Result<i64, String> {
    let bad = || format!("{name:?} is not a day: use YYYY-MM-DD");
    let mut parts = name.splitn(3, '-');
    let mut next = |len: usize| {
        parts
            .next()
            .filter(|part| part.len() == len && part.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|part| part.parse::<i64>().ok())
            .ok_or_else(bad)
    };
    let (y, m, d) = (next(4)?, next(2)?, next(2)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    // Days from civil, the inverse of `day_name`.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let day = era * 146_097 + doe - 719_468;
    if day_name(day) != name {
        return Err(bad());
    }
    Ok(day)
}

/// Text as every engine stores it: PostgreSQL text cannot hold NUL, so a
/// NUL character becomes U+FFFD. Allocates only when there is one. For text
/// a guest wrote that the host keeps as is (logs, refusal reasons).
pub fn storable_text(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_ids_are_checked_at_the_edge() {
        for good in ["hello", "shop-2", "abc"] {
            assert!(good.parse::<AppId>().is_ok(), "{good}");
        }
        for bad in [
            "",
            "ab",
            "Hello",
            "2shop",
            "shop-",
            "a/b",
            "../etc",
            &"a".repeat(33),
        ] {
            assert!(bad.parse::<AppId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn digests_round_trip_through_hex() {
        let d = Sha256Digest::of(b"abc");
        assert_eq!(
            d.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.to_string().parse::<Sha256Digest>().unwrap(), d);
        assert!("zz".parse::<Sha256Digest>().is_err());
    }

    #[test]
    fn days_round_trip() {
        assert_eq!(day_name(0), "1970-01-01");
        assert_eq!(day_name(20_779), "2026-11-22");
        assert_eq!(parse_day("2026-11-22").unwrap(), 20_779);
        assert_eq!(parse_day("2024-02-29").map(day_name).unwrap(), "2024-02-29");
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "26-11-22",
            "2026-11-22x",
            "yesterday",
        ] {
            assert!(parse_day(bad).is_err(), "{bad}");
        }
        for day in [-1000, 0, 11_016, 20_780, 60_000] {
            assert_eq!(parse_day(&day_name(day)).unwrap(), day);
        }
    }
}

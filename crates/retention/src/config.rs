//! The retention part of a plan, `[plans.NAME] retention = { … }`: restic's keep rules and its
//! duration grammar. Owned by this crate; the application composes it into the plan's table.
//!
//! ```toml
//! [plans.nightly]
//! retention = { keep_daily = 7, keep_weekly = 4, keep_within = "1y6m" }
//! ```
//!
//! A keep count of 0 is refused: it would not mean "keep none" (the newest pack is always kept)
//! and it used to remove every pack but the newest. Not using a rule is spelled by leaving its
//! key out; keeping only the newest pack is spelled `keep_last = 1`.
//!
//! `keep_within` uses restic's grammar: a number and a unit, `y` (years), `m` (months), `d`
//! (days), `h` (hours), combined without spaces (`1y6m`, `2d12h`, `72h`). Days count calendar
//! days in the plan's time zone and months and years step the calendar, so `1d` across a
//! daylight-saving change is 23 or 25 hours and `1m` before 31 March is 28 February (the end of
//! a shorter month is its last day). Minutes and seconds are refused: `m` means month here.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Days, LocalResult, Months, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A calendar duration in restic's grammar (`1y6m`, `7d`, `72h`): years, months, days, hours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CalendarDuration {
    /// Years (calendar).
    pub years: u32,
    /// Months (calendar).
    pub months: u32,
    /// Days (calendar days in the plan's zone).
    pub days: u32,
    /// Hours (elapsed time).
    pub hours: u32,
}

/// How the grammar is explained in error messages.
const GRAMMAR: &str = "restic's grammar: a number and a unit, `y` (years), `m` (months), `d` (days), `h` (hours), \
                       combined without spaces, e.g. `72h`, `7d`, `1m`, `1y6m`";

impl CalendarDuration {
    /// `hours` hours.
    pub fn hours(hours: u32) -> CalendarDuration {
        CalendarDuration {
            hours,
            ..CalendarDuration::default()
        }
    }

    /// `days` calendar days.
    pub fn days(days: u32) -> CalendarDuration {
        CalendarDuration {
            days,
            ..CalendarDuration::default()
        }
    }

    /// True when every part is 0.
    pub fn is_zero(&self) -> bool {
        *self == CalendarDuration::default()
    }

    /// The instant this long before `t`: years, months and days step the calendar of zone `tz`
    /// (a day that does not exist in the target month becomes its last day; a wall time that a
    /// daylight-saving change skips or repeats is read as its earlier instant, so the span is
    /// never shorter than written), then hours are subtracted as elapsed time. Far outside the
    /// calendar's range it saturates at the earliest representable instant.
    pub fn before(&self, t: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        let local = t.with_timezone(&tz).naive_local();
        let months = u64::from(self.years) * 12 + u64::from(self.months);
        let stepped = u32::try_from(months)
            .ok()
            .and_then(|m| local.checked_sub_months(Months::new(m)))
            .and_then(|l| l.checked_sub_days(Days::new(u64::from(self.days))));
        let Some(stepped) = stepped else {
            return DateTime::<Utc>::MIN_UTC;
        };
        let at = if stepped == local {
            t
        } else {
            earliest_instant(tz, stepped)
        };
        at.checked_sub_signed(TimeDelta::hours(i64::from(self.hours)))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

/// The earliest instant whose wall time in `tz` is `local`; for a wall time skipped by a
/// daylight-saving change, the earlier of its two readings (with the offsets around the gap).
fn earliest_instant(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        LocalResult::None => {
            let reading = |around: Option<NaiveDateTime>| {
                let around = around?;
                let off = tz.offset_from_local_datetime(&around).earliest()?;
                let off = chrono::Offset::fix(&off);
                Some(Utc.from_utc_datetime(&(local - TimeDelta::seconds(i64::from(off.local_minus_utc())))))
            };
            [
                reading(local.checked_sub_days(Days::new(1))),
                reading(local.checked_add_days(Days::new(1))),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
        }
    }
}

impl fmt::Display for CalendarDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0h");
        }
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for CalendarDuration {
    type Err = String;

    /// Parses restic's grammar; the error says what is wrong and how to write it.
    fn from_str(text: &str) -> Result<CalendarDuration, String> {
        let s = text.trim();
        if s.is_empty() {
            return Err(format!("the duration is empty; write one in {GRAMMAR}"));
        }
        let mut d = CalendarDuration::default();
        let mut seen = String::new();
        let mut rest = s;
        while !rest.is_empty() {
            if rest.starts_with('-') {
                return Err(format!(
                    "`{s}`: a negative duration is not allowed; write a positive one in {GRAMMAR}"
                ));
            }
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if digits == 0 {
                let what = if rest.starts_with(char::is_whitespace) {
                    "spaces are not allowed inside a duration".to_string()
                } else {
                    format!("expected a number at `{rest}`")
                };
                return Err(format!("`{s}`: {what}; write it in {GRAMMAR}"));
            }
            let (num, after) = rest.split_at(digits);
            if after.starts_with(['.', ',']) {
                return Err(format!(
                    "`{s}`: fractions are not allowed; use a smaller unit (`36h` instead of `1.5d`) in {GRAMMAR}"
                ));
            }
            let n: u32 = num
                .parse()
                .map_err(|_| format!("`{s}`: the number {num} is too large"))?;
            let unit_len = after.len() - after.trim_start_matches(|c: char| c.is_alphabetic()).len();
            let (unit, after) = after.split_at(unit_len);
            let slot = match unit {
                "y" => &mut d.years,
                "m" => &mut d.months,
                "d" => &mut d.days,
                "h" => &mut d.hours,
                "" if after.starts_with(char::is_whitespace) => {
                    return Err(format!(
                        "`{s}`: spaces are not allowed inside a duration; write it in {GRAMMAR}"
                    ));
                }
                "" => return Err(format!("`{s}`: the number {num} has no unit; write it in {GRAMMAR}")),
                _ => return Err(format!("`{s}`: {}", unit_error(unit))),
            };
            if seen.contains(unit) {
                return Err(format!(
                    "`{s}`: the unit `{unit}` appears twice; write each unit once, e.g. `1y6m`"
                ));
            }
            seen.push_str(unit);
            *slot = n;
            rest = after;
        }
        Ok(d)
    }
}

/// Why `unit` is not a unit of the grammar, and what to write instead.
fn unit_error(unit: &str) -> String {
    match unit {
        "s" | "sec" | "secs" | "second" | "seconds" | "ms" | "us" | "ns" | "min" | "mins" | "minute" | "minutes" => {
            let what = if unit.starts_with('m') && unit != "ms" {
                "minutes"
            } else {
                "seconds"
            };
            format!(
                "`{unit}` ({what}) is not a unit of a retention duration: retention works in hours, days, months \
                 and years ({GRAMMAR}). Minutes and seconds are refused because `m` means month here, and a \
                 window of minutes would remove nearly every pack"
            )
        }
        "M" => format!(
            "`M` is not a unit: months are written `m` (lowercase), as in restic ({GRAMMAR}); note that `1m` is \
             a month, not a minute"
        ),
        "w" | "week" | "weeks" | "W" => {
            format!("`{unit}`: weeks are not a unit (restic has none); write `7d` for a week ({GRAMMAR})")
        }
        "Y" | "D" | "H" => format!("`{unit}`: units are lowercase ({GRAMMAR})"),
        "year" | "years" | "yr" | "yrs" => format!("`{unit}`: write years as `y` ({GRAMMAR})"),
        "month" | "months" | "mon" | "mo" => format!("`{unit}`: write months as `m` ({GRAMMAR})"),
        "day" | "days" => format!("`{unit}`: write days as `d` ({GRAMMAR})"),
        "hour" | "hours" | "hr" | "hrs" => format!("`{unit}`: write hours as `h` ({GRAMMAR})"),
        _ => format!("unknown unit `{unit}`; write the duration in {GRAMMAR}"),
    }
}

impl Serialize for CalendarDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CalendarDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<CalendarDuration, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The fix offered for a rule that would keep nothing.
const ZERO_FIX: &str = "remove the key to not use the rule, or use `keep_last = 1` to keep only the newest pack";

/// `keep_within`: a [`CalendarDuration`] that is not zero.
fn keep_within<'de, D: Deserializer<'de>>(d: D) -> Result<Option<CalendarDuration>, D::Error> {
    let v = CalendarDuration::deserialize(d)?;
    if v.is_zero() {
        return Err(serde::de::Error::custom(format!(
            "a keep_within of 0 keeps nothing by age and is refused rather than read as \"remove everything\"; \
             {ZERO_FIX}"
        )));
    }
    Ok(Some(v))
}

/// `keep_last`, `keep_hourly`, ...: a count of at least 1.
fn keep_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let n = u32::deserialize(d)?;
    if n == 0 {
        return Err(serde::de::Error::custom(format!(
            "a keep count of 0 is refused: it would not mean \"keep none\" (the newest pack is always kept), and \
             it is never read as \"remove the packs\"; {ZERO_FIX}"
        )));
    }
    Ok(Some(n))
}

/// `max_packs`: at least 1.
fn max_packs<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let n = u32::deserialize(d)?;
    if n == 0 {
        return Err(serde::de::Error::custom(format!(
            "max_packs = 0 is refused: the newest pack is always kept, so it cannot mean \"no packs\"; {ZERO_FIX}"
        )));
    }
    Ok(Some(n))
}

/// Retention rules (restic's semantics). Empty means "keep everything". A count or span of 0 is
/// refused when the config is read (see this module); [`Default`] sets no rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Keep every pack younger than this, in restic's grammar (`72h`, `7d`, `1m` = a month,
    /// `1y6m`), measured from the newest pack.
    #[serde(default, deserialize_with = "keep_within", skip_serializing_if = "Option::is_none")]
    pub keep_within: Option<CalendarDuration>,
    /// Keep the newest N packs (`keep_last = 1`: only the newest).
    #[serde(default, deserialize_with = "keep_count", skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Keep the newest pack of each of the last N hours.
    #[serde(default, deserialize_with = "keep_count", skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest pack of each of the last N days.
    #[serde(default, deserialize_with = "keep_count", skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    /// Keep the newest pack of each of the last N weeks.
    #[serde(default, deserialize_with = "keep_count", skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest pack of each of the last N months.
    #[serde(default, deserialize_with = "keep_count", skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest pack of each of the last N years.
    #[serde(default, deserialize_with = "keep_count", skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    /// Never keep more than N packs (chain bases of kept incremental packs excepted).
    #[serde(default, deserialize_with = "max_packs", skip_serializing_if = "Option::is_none")]
    pub max_packs: Option<u32>,
}

impl backup_core::config::Section for RetentionConfig {}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<CalendarDuration, String> {
        s.parse()
    }

    #[test]
    fn restic_grammar_is_accepted() {
        let d = |y, m, dd, h| CalendarDuration {
            years: y,
            months: m,
            days: dd,
            hours: h,
        };
        for (text, want) in [
            ("72h", d(0, 0, 0, 72)),
            ("7d", d(0, 0, 7, 0)),
            ("1m", d(0, 1, 0, 0)),
            ("1y6m", d(1, 6, 0, 0)),
            ("2d12h", d(0, 0, 2, 12)),
            ("1h1y", d(1, 0, 0, 1)),
            (" 30d ", d(0, 0, 30, 0)),
            ("6y5m234d37h", d(6, 5, 234, 37)),
            ("0d", d(0, 0, 0, 0)),
        ] {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
        assert_eq!(d(1, 6, 0, 0).to_string(), "1y6m");
        assert_eq!(d(6, 5, 234, 37).to_string(), "6y5m234d37h");
        assert_eq!(d(0, 0, 0, 72).to_string(), "72h");
    }

    #[test]
    fn minutes_seconds_and_nonsense_are_refused_with_the_reason() {
        for (text, says) in [
            ("1m30s", "`s` (seconds) is not a unit"),
            ("90s", "`s` (seconds) is not a unit"),
            ("5min", "`min` (minutes) is not a unit"),
            ("30minutes", "(minutes)"),
            ("1M", "months are written `m`"),
            ("2w", "weeks are not a unit"),
            ("7days", "write days as `d`"),
            ("72 h", "spaces are not allowed"),
            ("1d 2h", "spaces are not allowed"),
            ("-1d", "negative"),
            ("", "empty"),
            ("   ", "empty"),
            ("7", "has no unit"),
            ("1.5d", "fractions are not allowed"),
            ("h", "expected a number"),
            ("1d2d", "appears twice"),
            ("99999999999h", "too large"),
            ("1x", "unknown unit `x`"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
        let e = parse("90s").unwrap_err();
        assert!(e.contains("`m` means month here"), "{e}");
    }

    #[test]
    fn days_step_the_calendar_and_hours_elapse() {
        let berlin = chrono_tz::Europe::Berlin;
        let utc = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        // The day after spring forward (2026-03-29, 02:00 -> 03:00): 01:00 CEST minus 1d is
        // 01:00 CET the day before, 23 hours earlier.
        let t = utc("2026-03-29T23:00:00Z");
        assert_eq!(CalendarDuration::days(1).before(t, berlin), utc("2026-03-29T00:00:00Z"));
        assert_eq!(
            CalendarDuration::hours(24).before(t, berlin),
            utc("2026-03-28T23:00:00Z")
        );
        // A skipped wall time (02:30 on 2026-03-29) reads as its earlier instant.
        let t = utc("2026-03-30T00:30:00Z"); // 02:30 CEST
        assert_eq!(CalendarDuration::days(1).before(t, berlin), utc("2026-03-29T00:30:00Z"));
        // Fall back (2026-10-25, 03:00 -> 02:00): 02:30 exists twice; the earlier one is used.
        let t = utc("2026-10-26T01:30:00Z"); // 02:30 CET
        assert_eq!(CalendarDuration::days(1).before(t, berlin), utc("2026-10-25T00:30:00Z"));
        // Months clamp to the end of a shorter month.
        let t = utc("2026-03-31T10:00:00Z"); // 12:00 CEST
        let want = utc("2026-02-28T11:00:00Z"); // 12:00 CET
        assert_eq!(parse("1m").unwrap().before(t, berlin), want);
        assert_eq!(
            parse("1y").unwrap().before(utc("2028-02-29T12:00:00Z"), chrono_tz::UTC),
            utc("2027-02-28T12:00:00Z")
        );
        // Saturates instead of failing.
        assert_eq!(parse("4000000y").unwrap().before(t, berlin), DateTime::<Utc>::MIN_UTC);
    }
}

//! The message catalog: every operator-facing text of packrat (CLI messages, job messages, alert
//! texts, doctor lines, the dashboard) in English and Simplified Chinese, as
//! [Fluent](https://projectfluent.org) files embedded in the binary (`locales/*.ftl`). Logs and
//! JSON keys stay English; only what a person reads is translated.
//!
//! The language is chosen once per process ([`set_language`], from the config's `language` or
//! [`Lang::from_env`]) and read wherever a text is made ([`language`]), so no text-making code
//! needs a language parameter; [`text_in`] gives a text in a given language.
//!
//! ```
//! use i18n::{Lang, text_in, tr};
//! assert_eq!(text_in(Lang::ZhCn, "job-completed-synced", &[]), "备份完成（已同步）");
//! assert_eq!(text_in(Lang::En, "job-failed", &[("reason", "disk full".into())]), "backup failed: disk full");
//! i18n::set_language(Lang::En);
//! assert_eq!(tr!("job-cancelled", who = "packrat cancel"), "cancelled by packrat cancel");
//! ```

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use serde::{Deserialize, Serialize};

/// A language of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Lang {
    /// English (the default).
    #[default]
    #[serde(rename = "en")]
    En,
    /// Simplified Chinese.
    #[serde(rename = "zh-CN")]
    ZhCn,
}

impl Lang {
    /// Every language, English first.
    pub const ALL: [Lang; 2] = [Lang::En, Lang::ZhCn];

    /// The tag as in the config: `en`, `zh-CN`.
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhCn => "zh-CN",
        }
    }

    /// The language of the environment's locale (`LC_ALL`, `LC_MESSAGES`, `LANG`): Chinese for
    /// `zh*`, English otherwise.
    pub fn from_env() -> Lang {
        let locale = ["LC_ALL", "LC_MESSAGES", "LANG"]
            .iter()
            .filter_map(|v| std::env::var(v).ok())
            .find(|v| !v.is_empty())
            .unwrap_or_default();
        Lang::from_locale(&locale)
    }

    /// The language of a locale name (`zh_CN.UTF-8` → Chinese, `C` → English).
    pub fn from_locale(locale: &str) -> Lang {
        if locale.to_ascii_lowercase().starts_with("zh") {
            Lang::ZhCn
        } else {
            Lang::En
        }
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Lang {
    type Err = String;
    fn from_str(s: &str) -> Result<Lang, String> {
        match s {
            "en" => Ok(Lang::En),
            "zh-CN" => Ok(Lang::ZhCn),
            other => Err(format!("unknown language `{other}`; use \"zh-CN\" or \"en\"")),
        }
    }
}

const EN: &str = include_str!("../locales/en.ftl");
const ZH_CN: &str = include_str!("../locales/zh-CN.ftl");

fn source(lang: Lang) -> &'static str {
    match lang {
        Lang::En => EN,
        Lang::ZhCn => ZH_CN,
    }
}

fn bundle(lang: Lang) -> &'static FluentBundle<FluentResource> {
    static BUNDLES: [OnceLock<FluentBundle<FluentResource>>; 2] = [OnceLock::new(), OnceLock::new()];
    BUNDLES[lang as usize].get_or_init(|| {
        let tag = lang.as_str().parse().unwrap_or_default();
        let mut b = FluentBundle::new_concurrent(vec![tag]);
        // Plain text for terminals, logs and e-mail: no Unicode isolation marks around values.
        b.set_use_isolating(false);
        // The catalog is part of the build; a syntax error is caught by this crate's tests.
        let res = FluentResource::try_new(source(lang).to_string()).unwrap_or_else(|(res, _)| res);
        let _ = b.add_resource(res);
        b
    })
}

static CURRENT: AtomicU8 = AtomicU8::new(0);

/// Sets the process's language (once at start, from the config's `language`).
pub fn set_language(lang: Lang) {
    CURRENT.store(lang as u8, Ordering::Relaxed);
}

/// The process's language (English until [`set_language`]).
pub fn language() -> Lang {
    match CURRENT.load(Ordering::Relaxed) {
        1 => Lang::ZhCn,
        _ => Lang::En,
    }
}

/// An argument of a message.
pub type Arg<'a> = FluentValue<'a>;

/// The text of `key` in `lang` with `args`; a key missing in `lang` falls back to English, and a
/// key missing everywhere is returned as it is (the catalog test forbids both).
pub fn text_in(lang: Lang, key: &str, args: &[(&str, Arg<'_>)]) -> String {
    let mut fargs = FluentArgs::new();
    for (k, v) in args {
        fargs.set(*k, v.clone());
    }
    for l in [lang, Lang::En] {
        let b = bundle(l);
        if let Some(pattern) = b.get_message(key).and_then(|m| m.value()) {
            let mut errors = Vec::new();
            let s: Cow<'_, str> = b.format_pattern(pattern, Some(&fargs), &mut errors);
            return s.into_owned();
        }
    }
    key.to_string()
}

/// The text of `key` in the process's language.
pub fn text(key: &str, args: &[(&str, Arg<'_>)]) -> String {
    text_in(language(), key, args)
}

/// `tr!("key", name = value, …)`: [`text`] with named arguments (anything `Into<FluentValue>`:
/// strings, numbers).
#[macro_export]
macro_rules! tr {
    ($key:literal $(, $name:ident = $value:expr)* $(,)?) => {
        $crate::text($key, &[$((stringify!($name), $crate::Arg::from($value))),*])
    };
}

/// Every key of `lang`'s catalog, sorted (for the completeness test and tools).
pub fn keys(lang: Lang) -> Vec<String> {
    let res = FluentResource::try_new(source(lang).to_string()).unwrap_or_else(|(res, _)| res);
    let mut keys: Vec<String> = res
        .entries()
        .filter_map(|e| match e {
            fluent_syntax::ast::Entry::Message(m) => Some(m.id.name.to_string()),
            _ => None,
        })
        .collect();
    keys.sort();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_catalogs_parse_and_have_the_same_keys() {
        for l in Lang::ALL {
            assert!(
                FluentResource::try_new(source(l).to_string()).is_ok(),
                "{l}.ftl has a syntax error"
            );
        }
        let en = keys(Lang::En);
        let zh = keys(Lang::ZhCn);
        let only_en: Vec<_> = en.iter().filter(|k| !zh.contains(k)).collect();
        let only_zh: Vec<_> = zh.iter().filter(|k| !en.contains(k)).collect();
        assert!(only_en.is_empty(), "missing in zh-CN.ftl: {only_en:?}");
        assert!(only_zh.is_empty(), "missing in en.ftl: {only_zh:?}");
        assert!(!en.is_empty());
    }

    #[test]
    fn every_text_formats_without_errors_in_both_languages() {
        for l in Lang::ALL {
            let b = bundle(l);
            for k in keys(l) {
                let m = b.get_message(&k).unwrap();
                let p = m.value().unwrap_or_else(|| panic!("{l}: {k} has no value"));
                let mut errors = Vec::new();
                // Arguments missing here show as {$name}; only syntax/reference errors count.
                let _ = b.format_pattern(p, None, &mut errors);
                let real: Vec<_> = errors
                    .iter()
                    .filter(|e| !format!("{e:?}").contains("Reference(Variable"))
                    .collect();
                assert!(real.is_empty(), "{l}: {k}: {real:?}");
            }
        }
    }

    #[test]
    fn key_messages_in_both_languages() {
        assert_eq!(
            text_in(
                Lang::ZhCn,
                "drill-head",
                &[
                    ("kind", "恢复演练".into()),
                    ("id", 7.into()),
                    ("plan", "nightly".into()),
                    ("status", "通过".into())
                ]
            ),
            "计划 nightly 的恢复演练 7：通过"
        );
        let t = |l, k, a: &[(&str, Arg<'_>)]| text_in(l, k, a);
        assert_eq!(t(Lang::ZhCn, "job-completed", &[]), "备份完成");
        assert_eq!(t(Lang::En, "job-completed", &[]), "backup completed");
        assert_eq!(t(Lang::ZhCn, "job-completed-not-synced", &[]), "备份完成（同步失败）");
        assert_eq!(
            t(Lang::En, "job-completed-not-synced", &[]),
            "backup completed (replication failed)"
        );
        assert_eq!(t(Lang::ZhCn, "job-failed-short", &[]), "备份失败");
        assert_eq!(t(Lang::ZhCn, "job-interrupted", &[]), "已中断");
        let pid = [("pid", Arg::from(42))];
        assert!(t(Lang::ZhCn, "job-interrupted-detail-pid", &pid).contains("（pid 42）"));
        let plan = [("plan", Arg::from("nightly")), ("defined", Arg::from("a, b"))];
        assert_eq!(
            t(Lang::En, "error-unknown-plan", &plan),
            "no plan `nightly` in the config (defined: a, b)"
        );
        assert_eq!(
            t(Lang::ZhCn, "error-unknown-plan", &plan),
            "配置中没有计划 `nightly`（已定义：a, b）"
        );
        let e = [("error", Arg::from("x"))];
        assert_eq!(t(Lang::En, "error-line", &e), "error: x");
        assert_eq!(t(Lang::ZhCn, "error-line", &e), "错误：x");
        let line = [
            ("tag", Arg::from(t(Lang::En, "doctor-tag-ok", &[]))),
            ("name", Arg::from("sink local")),
            ("detail", Arg::from("ok")),
        ];
        assert_eq!(t(Lang::En, "doctor-line", &line), "OK    sink local: ok");
        assert_eq!(
            t(
                Lang::En,
                "job-status",
                &[("status", "completed".into()), ("progress", 100.into())]
            ),
            "  status:      completed (100%)"
        );
        let sub = [
            ("host", Arg::from("h")),
            ("what", Arg::from(t(Lang::ZhCn, "alert-subject-test", &[]))),
        ];
        assert_eq!(
            t(Lang::ZhCn, "alert-subject", &sub),
            "packrat@h：[测试] packrat 告警渠道测试"
        );
        let sub = [("host", Arg::from("h")), ("what", Arg::from("w"))];
        assert_eq!(t(Lang::En, "alert-subject", &sub), "packrat@h: w");
        // Numbers are plain (no grouping), as in the English texts before the catalog.
        assert_eq!(
            t(
                Lang::En,
                "doctor-job-message",
                &[("job", 12345.into()), ("message", "m".into())]
            ),
            "job 12345 m"
        );
    }

    #[test]
    fn the_ops_guide_texts_and_the_language_choice() {
        assert_eq!(text_in(Lang::ZhCn, "job-completed-synced", &[]), "备份完成（已同步）");
        assert_eq!(
            text_in(Lang::En, "job-completed-synced", &[]),
            "backup completed (synced)"
        );
        assert_eq!(Lang::from_locale("zh_CN.UTF-8"), Lang::ZhCn);
        assert_eq!(Lang::from_locale("C.UTF-8"), Lang::En);
        assert_eq!("zh-CN".parse::<Lang>().unwrap(), Lang::ZhCn);
        assert!("fr".parse::<Lang>().unwrap_err().contains("zh-CN"));
        let cfg: std::collections::BTreeMap<String, Lang> = toml::from_str("language = \"zh-CN\"").unwrap();
        assert_eq!(cfg["language"], Lang::ZhCn);
    }
}

//! Which bins go out and under what names (`bin-transforms` in the config).
//!
//! The order is fixed and documented in docs/FORMATS.md: `include` and
//! `exclude` match the bin's name as it arrived; a bin named in `map` goes out
//! under exactly that name; every other bin's name goes through `transforms`
//! (trim, uppercase, lowercase) in the order given.
//!
//! Nothing here allocates per record: a transformed name is an [`OutName`],
//! the borrowed base name plus a case mapping that writers apply while they
//! copy the name out.

/// Which bins are candidates for output, before `exclude`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Include {
    #[default]
    All,
    None,
    /// Only these names (as they arrived).
    Only(Vec<Box<str>>),
}

/// One `transforms` entry, applied to bin names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameTransform {
    Uppercase,
    Lowercase,
    /// Strip leading and trailing white space.
    Trim,
}

impl NameTransform {
    /// The transform spelled as in the config (`uppercase`, `lowercase`,
    /// `trim`; ASCII case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        [
            ("uppercase", Self::Uppercase),
            ("lowercase", Self::Lowercase),
            ("trim", Self::Trim),
        ]
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(s))
        .map(|(_, t)| t)
    }
}

/// The case mapping applied to an output name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Case {
    #[default]
    Keep,
    Upper,
    Lower,
}

/// A bin's output name: `base` with `case` applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutName<'a> {
    pub base: &'a str,
    pub case: Case,
}

impl<'a> OutName<'a> {
    /// The name unchanged.
    pub fn plain(base: &'a str) -> Self {
        OutName {
            base,
            case: Case::Keep,
        }
    }

    /// Calls `f` with each char of the output name.
    pub fn for_each_char(&self, mut f: impl FnMut(char)) {
        match self.case {
            Case::Keep => self.base.chars().for_each(f),
            Case::Upper => self
                .base
                .chars()
                .flat_map(char::to_uppercase)
                .for_each(&mut f),
            Case::Lower => self
                .base
                .chars()
                .flat_map(char::to_lowercase)
                .for_each(&mut f),
        }
    }

    /// Length in UTF-8 bytes of the output name.
    #[inline]
    pub fn byte_len(&self) -> usize {
        if self.case == Case::Keep {
            return self.base.len();
        }
        let mut n = 0;
        self.for_each_char(|c| n += c.len_utf8());
        n
    }

    /// True when the output name equals `other`.
    pub fn eq_str(&self, other: &str) -> bool {
        if self.case == Case::Keep {
            return self.base == other;
        }
        let mut rest = other.chars();
        let mut same = true;
        self.for_each_char(|c| same &= rest.next() == Some(c));
        same && rest.next().is_none()
    }

    /// True when both output names are the same text. Allocates when a
    /// case mapping is involved (only policies that change names get here).
    pub fn same_as(&self, other: &OutName<'_>) -> bool {
        if self.case == Case::Keep && other.case == Case::Keep {
            return self.base == other.base;
        }
        self.eq_str(&other.to_owned_string())
    }

    /// Appends the output name to `out` as UTF-8.
    #[inline]
    pub fn push_to(&self, out: &mut Vec<u8>) {
        if self.case == Case::Keep {
            out.extend_from_slice(self.base.as_bytes());
            return;
        }
        self.for_each_char(|c| {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        });
    }

    /// The output name as an owned string (error messages, avro).
    pub fn to_owned_string(&self) -> String {
        let mut s = String::with_capacity(self.byte_len());
        self.for_each_char(|c| s.push(c));
        s
    }
}

/// Which bins go out and under what names. `Default` = every bin as named.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BinPolicy {
    include: Include,
    exclude: Vec<Box<str>>,
    rename: Vec<(Box<str>, Box<str>)>,
    trim: bool,
    case: Case,
}

impl BinPolicy {
    /// Every bin, as named.
    pub fn all() -> Self {
        Self::default()
    }

    /// No bins at all (metadata only).
    pub fn none() -> Self {
        BinPolicy {
            include: Include::None,
            ..Self::default()
        }
    }

    /// Only the bins named (as they arrive on the wire).
    pub fn include<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let names = names.into_iter().map(|n| n.as_ref().into()).collect();
        BinPolicy {
            include: Include::Only(names),
            ..Self::default()
        }
    }

    /// Drops the bins named (as they arrive), whatever `include` says.
    pub fn exclude<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.exclude
            .extend(names.into_iter().map(|n| n.as_ref().into()));
        self
    }

    /// Bin `from` goes out as exactly `to` (name transforms do not apply).
    pub fn rename(mut self, from: &str, to: &str) -> Self {
        self.rename.retain(|(f, _)| &**f != from);
        self.rename.push((from.into(), to.into()));
        self
    }

    /// Adds a name transform, applied after the ones added before.
    pub fn transform(mut self, t: NameTransform) -> Self {
        match t {
            NameTransform::Trim => self.trim = true,
            NameTransform::Uppercase => self.case = Case::Upper,
            NameTransform::Lowercase => self.case = Case::Lower,
        }
        self
    }

    /// True when every bin goes out under its own name. Field by field
    /// rather than `== Self::default()`: json asks once per record.
    #[inline]
    pub fn is_identity(&self) -> bool {
        self.keeps_every_bin() && !self.changes_names()
    }

    /// True when output names can differ from wire names (so two bins could
    /// end up with the same output name).
    #[inline]
    pub fn changes_names(&self) -> bool {
        !self.rename.is_empty() || self.trim || self.case != Case::Keep
    }

    /// True when no bin is left out (names may still change).
    #[inline]
    pub fn keeps_every_bin(&self) -> bool {
        matches!(self.include, Include::All) && self.exclude.is_empty()
    }

    /// The output name of bin `name`, or `None` when the bin is left out.
    /// Inlined, so the common policy (every bin as named) costs a few
    /// compares per bin rather than a call.
    #[inline]
    pub fn select<'a>(&'a self, name: &'a str) -> Option<OutName<'a>> {
        if matches!(self.include, Include::All)
            && self.exclude.is_empty()
            && self.rename.is_empty()
            && !self.trim
            && self.case == Case::Keep
        {
            return Some(OutName::plain(name));
        }
        self.select_changed(name)
    }

    /// [`select`](Self::select) for a policy that leaves out or renames bins.
    fn select_changed<'a>(&'a self, name: &'a str) -> Option<OutName<'a>> {
        match &self.include {
            Include::All => {}
            Include::None => return None,
            Include::Only(names) => {
                if !names.iter().any(|n| &**n == name) {
                    return None;
                }
            }
        }
        if self.exclude.iter().any(|n| &**n == name) {
            return None;
        }
        if let Some((_, to)) = self.rename.iter().find(|(from, _)| &**from == name) {
            return Some(OutName::plain(to));
        }
        let base = if self.trim { name.trim() } else { name };
        Some(OutName {
            base,
            case: self.case,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(p: &BinPolicy, name: &str) -> Option<String> {
        p.select(name).map(|n| n.to_owned_string())
    }

    #[test]
    fn default_keeps_every_bin_as_named() {
        let p = BinPolicy::default();
        assert!(p.is_identity());
        assert_eq!(out(&p, " Ab "), Some(" Ab ".to_string()));
    }

    #[test]
    fn include_exclude_rename_transform() {
        let p = BinPolicy::include(["a", "b", "c", " d "])
            .exclude(["b"])
            .rename("c", "Cee")
            .transform(NameTransform::Trim)
            .transform(NameTransform::Uppercase);
        assert!(!p.is_identity());
        assert_eq!(out(&p, "a"), Some("A".to_string()));
        assert_eq!(out(&p, "b"), None);
        assert_eq!(out(&p, "c"), Some("Cee".to_string()));
        assert_eq!(out(&p, " d "), Some("D".to_string()));
        assert_eq!(out(&p, "e"), None);
        assert_eq!(out(&BinPolicy::none(), "a"), None);
        assert!(!p.keeps_every_bin());
        assert!(!BinPolicy::none().keeps_every_bin());
        assert!(!BinPolicy::all().exclude(["b"]).keeps_every_bin());
        assert!(BinPolicy::all().keeps_every_bin());
        assert!(BinPolicy::all().is_identity());
        for changed in [
            BinPolicy::none(),
            BinPolicy::include(["a"]),
            BinPolicy::all().exclude(["a"]),
            BinPolicy::all().rename("a", "b"),
            BinPolicy::all().transform(NameTransform::Trim),
            BinPolicy::all().transform(NameTransform::Lowercase),
        ] {
            assert!(!changed.is_identity(), "{changed:?}");
            assert_ne!(changed, BinPolicy::default());
        }
        assert!(BinPolicy::all()
            .rename("a", "b")
            .transform(NameTransform::Uppercase)
            .keeps_every_bin());
    }

    #[test]
    fn last_case_transform_wins() {
        let p = BinPolicy::all()
            .transform(NameTransform::Uppercase)
            .transform(NameTransform::Lowercase);
        assert_eq!(out(&p, "MiXed"), Some("mixed".to_string()));
    }

    #[test]
    fn out_name_comparisons_apply_case() {
        let up = OutName {
            base: "straße",
            case: Case::Upper,
        };
        assert_eq!(up.to_owned_string(), "STRASSE");
        assert_eq!(up.byte_len(), 7);
        assert!(up.eq_str("STRASSE"));
        assert!(!up.eq_str("STRASS"));
        assert!(!up.eq_str("STRASSEX"));
        assert!(up.same_as(&OutName::plain("STRASSE")));
        assert!(!up.same_as(&OutName::plain("straße")));
        let mut v = Vec::new();
        up.push_to(&mut v);
        assert_eq!(v, b"STRASSE");
    }

    #[test]
    fn transforms_parse_from_config_spelling() {
        assert_eq!(
            NameTransform::parse("UpperCase"),
            Some(NameTransform::Uppercase)
        );
        assert_eq!(NameTransform::parse("trim"), Some(NameTransform::Trim));
        assert_eq!(NameTransform::parse("reverse"), None);
    }
}

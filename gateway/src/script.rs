//! `bourse script`.

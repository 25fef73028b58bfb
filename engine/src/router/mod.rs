//! Router: host → path trie → method/header filters, compiled once per snapshot.

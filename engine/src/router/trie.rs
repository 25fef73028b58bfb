//! The path trie of one host table: one node per pattern segment, built once per snapshot.
//!
//! A path is split on `/` after its leading `/`: `/` has no segments, `/a/` is `["a", ""]`.
//! Segments are matched as bytes; the trie decodes nothing, so `/a%2Fb` is one segment
//! `a%2Fb` and never matches `/a/b`. Request paths arrive in normal form (see
//! [`crate::http::path`]: `%41` has become `A` before the lookup).
//!
//! Candidates come out most specific first, which is the order the router accepts them in:
//! 1. exact patterns, depth-first with the static child tried before the parameter child at
//!    every segment — so a pattern without parameters comes first, and between two patterns
//!    the one whose first parameter comes later wins (the first segment where they differ is
//!    static in one and a parameter in the other);
//! 2. prefix patterns, longest (most segments) first.
//!
//! Routes with the same pattern share a node; their list is sorted at build time (more
//! constraints first, then declared order), so a lookup stops at the first route whose
//! method and headers match. A lookup visits each trie node at most twice (exact search,
//! then the prefix walk up the literal spine) and never the route list as a whole: its cost
//! follows the path and the patterns that share its segments, not the number of routes. It
//! never allocates; the exact search recurses once per segment, so its depth is bounded by
//! the longest configured pattern, not by the request.

use super::bytes_map::BytesMap;
use coregate_config::{PathKind, PathPattern, Segment};

/// Static children: scanning a short list is as fast as hashing the segment up to about
/// this many entries, and faster below. Measured per whole lookup on the worst case for a
/// scan (siblings of equal length, last one wanted): 37 ns with 2 children scanned against
/// 47 ns with every level hashed; 43 ns scanned against 40 ns hashed at 8 children; hashed
/// levels stay at 40–42 ns from 9 to 64 children.
const LINEAR_CHILDREN_MAX: usize = 8;

type NodeId = usize;
const ROOT: NodeId = 0;

/// A frozen trie; `nodes[ROOT]` is the root (the pattern `/`).
#[derive(Debug)]
pub(super) struct Trie {
    nodes: Box<[Node]>,
}

#[derive(Debug)]
struct Node {
    statics: Children,
    /// The `{param}` child: matches any one non-empty segment.
    param: Option<NodeId>,
    /// Routes whose exact pattern ends here, most specific first.
    exact: Box<[usize]>,
    /// Routes whose prefix pattern ends here, most specific first.
    prefix: Box<[usize]>,
    /// Bytes of path a prefix ending here consumes (`/api/v1` is 7); only meaningful on the
    /// all-literal spine where prefixes live.
    prefix_bytes: usize,
    /// The nearest ancestor on the literal spine that holds prefix routes.
    prefix_parent: Option<NodeId>,
}

#[derive(Debug)]
enum Children {
    /// Few children: scanned.
    Linear(Box<[(Box<[u8]>, NodeId)]>),
    Hashed(BytesMap<NodeId>),
}

impl Children {
    fn get(&self, segment: &[u8]) -> Option<NodeId> {
        match self {
            Children::Linear(children) => children
                .iter()
                .find(|(literal, _)| **literal == *segment)
                .map(|&(_, id)| id),
            Children::Hashed(children) => children.get(segment).copied(),
        }
    }
}

/// Where the next segment of a path starts: `Some(offset)`, or `None` past the last one.
type Cursor = Option<usize>;

/// The cursor at the first segment of `path`, which starts with `/`.
fn first_segment(path: &[u8]) -> Cursor {
    (path.len() > 1).then_some(1)
}

/// The segment at `start` and the cursor after it.
fn segment_at(path: &[u8], start: usize) -> (&[u8], Cursor) {
    let rest = &path[start..];
    match rest.iter().position(|&b| b == b'/') {
        Some(slash) => (&rest[..slash], Some(start + slash + 1)),
        None => (rest, None),
    }
}

/// Calls `f` with the index and byte range of every segment of `path`, in order.
pub(super) fn for_each_segment(path: &[u8], mut f: impl FnMut(usize, std::ops::Range<usize>)) {
    let mut cursor = first_segment(path);
    let mut index = 0;
    while let Some(start) = cursor {
        let (segment, next) = segment_at(path, start);
        f(index, start..start + segment.len());
        index += 1;
        cursor = next;
    }
}

impl Trie {
    /// Offers the routes whose pattern matches `path` (which starts with `/`) to `accept`,
    /// most specific first, and returns the first accepted one with the bytes of path its
    /// pattern consumed (the whole path for an exact pattern).
    pub(super) fn find(
        &self,
        path: &[u8],
        accept: &mut impl FnMut(usize) -> bool,
    ) -> Option<(usize, usize)> {
        if let Some(route) = self.find_exact(ROOT, path, first_segment(path), accept) {
            return Some((route, path.len()));
        }
        // The deepest node of the literal spine that the path reaches and that holds
        // prefix routes; then its ancestors with prefix routes, deepest first.
        let mut node = ROOT;
        let mut deepest = (!self.nodes[ROOT].prefix.is_empty()).then_some(ROOT);
        let mut cursor = first_segment(path);
        while let Some(start) = cursor {
            let (segment, next) = segment_at(path, start);
            let Some(child) = self.nodes[node].statics.get(segment) else {
                break;
            };
            node = child;
            if !self.nodes[node].prefix.is_empty() {
                deepest = Some(node);
            }
            cursor = next;
        }
        let mut holder = deepest;
        while let Some(id) = holder {
            let node = &self.nodes[id];
            if let Some(&route) = node.prefix.iter().find(|&&route| accept(route)) {
                return Some((route, node.prefix_bytes));
            }
            holder = node.prefix_parent;
        }
        None
    }

    fn find_exact(
        &self,
        id: NodeId,
        path: &[u8],
        cursor: Cursor,
        accept: &mut impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        let node = &self.nodes[id];
        let Some(start) = cursor else {
            return node.exact.iter().copied().find(|&route| accept(route));
        };
        let (segment, next) = segment_at(path, start);
        if let Some(child) = node.statics.get(segment) {
            if let Some(route) = self.find_exact(child, path, next, accept) {
                return Some(route);
            }
        }
        match node.param {
            Some(child) if !segment.is_empty() => self.find_exact(child, path, next, accept),
            _ => None,
        }
    }
}

/// Collects patterns, then freezes them into a [`Trie`].
#[derive(Debug)]
pub(super) struct TrieBuilder {
    nodes: Vec<BuildNode>,
}

#[derive(Debug, Default)]
struct BuildNode {
    statics: BytesMap<NodeId>,
    param: Option<NodeId>,
    exact: Vec<usize>,
    prefix: Vec<usize>,
}

impl Default for TrieBuilder {
    fn default() -> Self {
        TrieBuilder {
            nodes: vec![BuildNode::default()],
        }
    }
}

impl TrieBuilder {
    /// Adds route `route` with its pattern. Prefix patterns hold literals only (validation
    /// guarantees it); one that does not is left out rather than matched wrongly.
    pub(super) fn insert(&mut self, pattern: &PathPattern, route: usize) {
        let is_prefix = pattern.kind == PathKind::Prefix;
        let has_param = pattern
            .segments
            .iter()
            .any(|s| matches!(s, Segment::Param(_)));
        debug_assert!(
            !(is_prefix && has_param),
            "validation keeps parameters out of prefix patterns"
        );
        if is_prefix && has_param {
            return;
        }
        let mut node = ROOT;
        for segment in &pattern.segments {
            node = match segment {
                Segment::Literal(literal) => self.static_child(node, literal.as_bytes()),
                Segment::Param(_) => self.param_child(node),
            };
        }
        match pattern.kind {
            PathKind::Exact => self.nodes[node].exact.push(route),
            PathKind::Prefix => self.nodes[node].prefix.push(route),
        }
    }

    fn static_child(&mut self, parent: NodeId, literal: &[u8]) -> NodeId {
        if let Some(&id) = self.nodes[parent].statics.get(literal) {
            return id;
        }
        let id = self.push_node();
        self.nodes[parent].statics.insert(literal.into(), id);
        id
    }

    fn param_child(&mut self, parent: NodeId) -> NodeId {
        if let Some(id) = self.nodes[parent].param {
            return id;
        }
        let id = self.push_node();
        self.nodes[parent].param = Some(id);
        id
    }

    fn push_node(&mut self) -> NodeId {
        self.nodes.push(BuildNode::default());
        self.nodes.len() - 1
    }

    /// Freezes the trie. `rank` orders the routes of one node: smaller is more specific.
    pub(super) fn finish<K: Ord>(self, rank: impl Fn(usize) -> K) -> Trie {
        let count = self.nodes.len();
        // Prefix bookkeeping along the literal spine, parents before children (children
        // always have larger ids than their parent).
        let mut prefix_bytes = vec![0; count];
        let mut prefix_parent: Vec<Option<NodeId>> = vec![None; count];
        for (id, node) in self.nodes.iter().enumerate() {
            let holder = if node.prefix.is_empty() {
                prefix_parent[id]
            } else {
                Some(id)
            };
            for (literal, &child) in &node.statics {
                prefix_bytes[child] = prefix_bytes[id] + 1 + literal.len();
                prefix_parent[child] = holder;
            }
        }
        let nodes = self
            .nodes
            .into_iter()
            .enumerate()
            .map(|(id, node)| {
                let statics = if node.statics.len() <= LINEAR_CHILDREN_MAX {
                    Children::Linear(node.statics.into_iter().collect())
                } else {
                    Children::Hashed(node.statics)
                };
                let sorted = |mut routes: Vec<usize>| {
                    routes.sort_by_key(|&route| (rank(route), route));
                    routes.into_boxed_slice()
                };
                Node {
                    statics,
                    param: node.param,
                    exact: sorted(node.exact),
                    prefix: sorted(node.prefix),
                    prefix_bytes: prefix_bytes[id],
                    prefix_parent: prefix_parent[id],
                }
            })
            .collect();
        Trie { nodes }
    }
}

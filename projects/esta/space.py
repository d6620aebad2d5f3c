"""The stitching space of ESTA / SN-Net: which (front block, end block) pairs of two
anchors are stitches, and which stitching layer serves each.

SN-Net's rule, written again from its description: slide a window of ``kernel_size``
blocks with ``stride`` over the common depth; every ordered pair (j, k) inside a window
is a stitch "run the front anchor's blocks 0..j, map its tokens with a stitching layer,
run the end anchor's blocks k..L-1"; a pair seen in an earlier window keeps that
window's layer, and every window that adds a pair gets one new stitching layer. Depth
12, kernel 2, stride 1 gives 34 stitches served by 11 layers per anchor pair. Only
nearest anchors (by width) are stitched, the smaller one in front; the anchors alone
are stitches too (ids ``0..A-1``, then the stitches of pair (0, 1), of pair (1, 2), ...).
"""
from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Sequence, Tuple


class Stitch(NamedTuple):
    """One path. ``front == end`` and ``layer is None``: an anchor alone."""
    front: int          # anchor index that runs blocks 0..j
    end: int            # anchor index that runs blocks k..L-1
    j: int              # last front block (inclusive); L-1 for an anchor alone
    k: int              # first end block; L for an anchor alone
    layer: Optional[int]  # global stitching-layer index, None for an anchor

    @property
    def is_anchor(self) -> bool:
        return self.layer is None


def paired_stitching(depth: int, kernel_size: int = 2, stride: int = 1
                     ) -> Tuple[List[Tuple[int, int]], List[int], int]:
    """(pairs (j, k), layer index of each pair, number of layers) for one anchor pair."""
    if depth < 1:
        raise ValueError(f'depth must be positive, got {depth}.')
    if not 1 <= kernel_size <= depth:
        raise ValueError(f'kernel_size must be in [1, depth={depth}], got {kernel_size}.')
    if stride < 1:
        raise ValueError(f'stride must be positive, got {stride}.')
    pairs: List[Tuple[int, int]] = []
    layers: List[int] = []
    num_layers = 0
    for start in range(0, depth, stride):
        ids = range(start, min(start + kernel_size, depth))
        new = [(j, k) for j in ids for k in ids if (j, k) not in pairs]
        if new:
            pairs.extend(new)
            layers.extend([num_layers] * len(new))
            num_layers += 1
    return pairs, layers, num_layers


@dataclass
class StitchSpace:
    """Every stitch of a family of ``len(dims)`` anchors of equal depth.

    dims: embedding width of each anchor, strictly increasing (smaller anchor first).
    """
    depth: int
    dims: Sequence[int]
    kernel_size: int = 2
    stride: int = 1

    def __post_init__(self) -> None:
        dims = list(self.dims)
        if len(dims) < 2:
            raise ValueError(f'stitching needs at least 2 anchors, got {len(dims)}.')
        if any(b <= a for a, b in zip(dims, dims[1:])):
            raise ValueError(
                f'anchors must be ordered by strictly increasing embed_dims (the smaller '
                f'anchor runs in front, SN-Net), got widths {dims}. Reorder the anchors '
                'list, or drop an anchor of a width that is already present.')
        pairs, layers, n = paired_stitching(self.depth, self.kernel_size, self.stride)
        self.layers_per_pair = n
        #: (front anchor, end anchor, in width, out width) of every stitching layer
        self.layer_specs: List[Tuple[int, int, int, int]] = []
        self.stitches: List[Stitch] = [Stitch(a, a, self.depth - 1, self.depth, None)
                                       for a in range(len(dims))]
        for p in range(len(dims) - 1):
            base = p * n
            self.layer_specs += [(p, p + 1, dims[p], dims[p + 1])] * n
            self.stitches += [Stitch(p, p + 1, j, k, base + layer)
                              for (j, k), layer in zip(pairs, layers)]

    def __len__(self) -> int:
        return len(self.stitches)

    @property
    def num_anchors(self) -> int:
        return len(self.dims)

    @property
    def num_layers(self) -> int:
        return len(self.layer_specs)

    def check_id(self, stitch: int) -> int:
        if not isinstance(stitch, int) or not 0 <= stitch < len(self):
            raise IndexError(f'stitch id {stitch!r} is out of range: this space has '
                             f'{len(self)} stitches (ids 0..{len(self) - 1}; 0..'
                             f'{self.num_anchors - 1} are the anchors alone).')
        return stitch

    def blocks_used(self, stitch: int) -> List[Tuple[int, int]]:
        """(anchor, block) pairs a stitch runs, in order."""
        s = self.stitches[self.check_id(stitch)]
        if s.is_anchor:
            return [(s.front, i) for i in range(self.depth)]
        return [(s.front, i) for i in range(s.j + 1)] + \
               [(s.end, i) for i in range(s.k, self.depth)]

    def users(self, anchor: int, block: int) -> List[int]:
        """Stitch ids that run ``block`` of ``anchor`` (their bias rows, in order)."""
        return [i for i in range(len(self)) if (anchor, block) in self.blocks_used(i)]

    def layer_users(self, layer: int) -> List[int]:
        return [i for i, s in enumerate(self.stitches) if s.layer == layer]

    def tap_source(self, stitch: int, depth_index: int) -> int:
        """Anchor whose output at ``depth_index`` a dense tap takes: the end anchor from
        its first block on (it overwrites depths it re-runs) and in a gap between the
        front's last and the end's first block (there the stitched tokens), else the
        front anchor."""
        s = self.stitches[self.check_id(stitch)]
        if s.is_anchor:
            return s.front
        return s.end if depth_index >= s.k or depth_index > s.j else s.front

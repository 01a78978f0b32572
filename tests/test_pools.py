"""The shared worker-process maps: input order kept, every item once, other processes doing the work."""
import os

from fewshot.pools import chunked_map, ordered_map


def _square_and_pid(x):
    return x * x, os.getpid()


def _tag_chunk(args):
    chunk, tag = args
    return [(tag, x, os.getpid()) for x in chunk]


def test_ordered_map_keeps_the_order_and_works_in_other_processes():
    out = ordered_map(_square_and_pid, list(range(7)), workers=2)
    assert [v for v, _ in out] == [x * x for x in range(7)]
    assert os.getpid() not in {pid for _, pid in out}
    alone = ordered_map(_square_and_pid, [3], workers=2)  # one task: no pool started
    assert alone == [(9, os.getpid())]


def test_chunked_map_gives_every_item_once_chunk_after_chunk():
    items = list(range(40))
    out = chunked_map(_tag_chunk, items, 2, "t")
    assert sorted(x for _, x, _ in out) == items and {t for t, _, _ in out} == {"t"}
    assert [x for _, x, _ in out] == [x for i in range(16) for x in items[i::16]]  # 8 interleaved chunks a worker
    assert os.getpid() not in {pid for _, _, pid in out}

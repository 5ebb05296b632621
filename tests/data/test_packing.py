import numpy as np

from ptmzoo.data.packing import PackedBlocks, SentencePairs
from ptmzoo.data.shards import ShardedCorpus

SEP = 10**6  # a separator id no real token has


def _stream(split):
    return np.concatenate([np.append(split.doc(d), SEP) for d in range(split.num_docs)])


def test_packed_blocks_are_the_separated_stream_without_padding(wiki_shards):
    split = ShardedCorpus(wiki_shards).split("train")
    blocks = PackedBlocks(split, block_len=100, separator_id=SEP, prefix=(1,), suffix=(2,))
    stream = _stream(split)
    assert len(blocks) == len(stream) // 100
    for i in (0, 1, len(blocks) // 2, len(blocks) - 1):
        ids = blocks[(i, 0)]["input_ids"]
        assert len(ids) == 102 and ids[0] == 1 and ids[-1] == 2
        assert np.array_equal(ids[1:-1], stream[i * 100 : (i + 1) * 100])


def test_sentence_pairs(wiki_shards, wordpiece_tokenizer):
    split = ShardedCorpus(wiki_shards).split("train")
    tok = wordpiece_tokenizer
    pairs = SentencePairs(split, seq_len=64, cls_id=tok.cls_id, sep_id=tok.sep_id, random_next_prob=0.5, seed=3)
    # chunks tile every document exactly, in order, within the length limit
    for doc in range(split.num_docs):
        rows = pairs.chunks[pairs.chunks[:, 0] == doc]
        assert rows[0, 1] == 0 and rows[-1, 2] == split.doc_len[doc]
        assert np.all(rows[1:, 1] == rows[:-1, 2]) and np.all(rows[:, 2] - rows[:, 1] <= 61)
    labels, doc_text = [], {}
    for i in range(len(pairs)):
        sample = pairs[(i, 0)]
        ids, types = sample["input_ids"], sample["token_type_ids"]
        assert len(ids) <= 64 and ids[0] == tok.cls_id and ids[-1] == tok.sep_id
        assert (ids == tok.sep_id).sum() == 2 and types[0] == 0 and types[-1] == 1
        labels.append(sample["nsp_labels"])
        if sample["nsp_labels"] == 0:  # a true continuation is contiguous text of the chunk
            doc, start, end = pairs.chunks[i]
            a_end = int(np.flatnonzero(ids == tok.sep_id)[0])
            content = np.concatenate([ids[1:a_end], ids[a_end + 1 : -1]])
            chunk = split.doc(doc)[start:end]
            assert any(np.array_equal(content, chunk[o : o + len(content)]) for o in range(len(chunk) - len(content) + 1))
    assert 0.4 < np.mean(labels) < 0.6
    # re-drawn in another epoch, identical for the same key
    assert any(pairs[(i, 1)]["nsp_labels"] != pairs[(i, 0)]["nsp_labels"] for i in range(50))
    assert all(np.array_equal(pairs[(i, 2)]["input_ids"], pairs[(i, 2)]["input_ids"]) for i in range(5))


def test_document_ids_and_restarted_positions(wiki_shards):
    split = ShardedCorpus(wiki_shards).split("train")
    blocks = PackedBlocks(split, block_len=500, separator_id=SEP, prefix=(1,), suffix=(2,), document_attention=True)
    boundary_seen = False
    for i in range(len(blocks)):
        sample = blocks[(i, 0)]
        ids, docs, positions = sample["input_ids"], sample["document_ids"], sample["position_ids"]
        assert len(ids) == len(docs) == len(positions) == 502
        assert docs[0] == 0 and np.all(np.diff(docs) >= 0) and docs[-1] == docs[-2]
        # positions count up inside a document and restart at 0 where a new one begins
        new_doc = np.flatnonzero(np.diff(docs)) + 1
        assert np.all(positions[new_doc] == 0) and positions[0] == 0
        inside = np.setdiff1d(np.arange(1, len(ids)), new_doc)
        assert np.all(positions[inside] == positions[inside - 1] + 1)
        # a separator closes the document it ends
        for j in new_doc:
            assert ids[j - 1] == SEP
            boundary_seen = True
    assert boundary_seen


def test_sentence_order_pairs_are_consecutive_segments_swapped_half_the_time(wiki_shards, wordpiece_tokenizer):
    split = ShardedCorpus(wiki_shards).split("train")
    tok = wordpiece_tokenizer
    pairs = SentencePairs(split, seq_len=64, cls_id=tok.cls_id, sep_id=tok.sep_id, random_next_prob=0.5, seed=3,
                          task="sop")
    labels = []
    for i in range(len(pairs)):
        sample = pairs[(i, 0)]
        assert "nsp_labels" not in sample
        ids = sample["input_ids"]
        a_end = int(np.flatnonzero(ids == tok.sep_id)[0])
        a, b = ids[1:a_end], ids[a_end + 1 : -1]
        if sample["sop_labels"] == 1:
            a, b = b, a  # swapped back, the pair must read as contiguous text of the chunk
        doc, start, end = pairs.chunks[i]
        chunk = split.doc(doc)[start:end]
        content = np.concatenate([a, b])
        if len(content) == len(chunk):  # untruncated: A then B is exactly the chunk
            assert np.array_equal(content, chunk)
        labels.append(sample["sop_labels"])
    assert 0.4 < np.mean(labels) < 0.6

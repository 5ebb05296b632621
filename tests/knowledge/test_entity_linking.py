"""Entity linking by name: tagged spans by their joined words, plain text by a greedy longest
match that never cuts an ASCII word; the entity id goes to the first token of the mention."""

from __future__ import annotations

import numpy as np

from ptmzoo.knowledge.linking import EntityLinker, token_entities

NAMES = ["中华", "中华人民共和国", "北京", "Paris", "New_York", "人民"]


def test_longest_match_takes_the_longest_name_and_whole_ascii_words():
    linker = EntityLinker(NAMES)
    text = "中华人民共和国首都北京。Parisian art, Paris and New York; 中华文明"
    found = [(text[b:e], NAMES[i - 1]) for b, e, i in linker.longest_match(text)]
    assert found == [("中华人民共和国", "中华人民共和国"), ("北京", "北京"), ("Paris", "Paris"),
                     ("New York", "New_York"), ("中华", "中华")]  # 人民 is inside the longer match


def test_tagged_spans_link_by_their_words_joined():
    linker = EntityLinker(NAMES)
    text = "国家 主席 江 泽民 访问 New York 和 北 京"
    spans = [(text.index("江"), text.index("民") + 1), (text.index("New"), text.index("York") + 4),
             (text.index("北"), len(text))]
    assert linker.lookup("中华 人民 共和国") == 2 and linker.lookup("江 泽民") == 0
    assert linker.link_spans(text, spans) == [(spans[1][0], spans[1][1], 5), (spans[2][0], spans[2][1], 3)]


def test_entity_id_sits_on_the_first_token_of_the_mention():
    # byte-level BPE style: "ĠNew" carries the space before it; "York" follows; "Paris" is one token
    text = "in New York, Paris"
    offsets = np.asarray([(0, 2), (2, 6), (7, 11), (11, 12), (12, 18)])
    mentions = EntityLinker(NAMES).longest_match(text)
    assert token_entities(offsets, mentions).tolist() == [0, 5, 0, 0, 4]
    assert token_entities(offsets, []).tolist() == [0] * 5

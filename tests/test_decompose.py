"""Compound questions: split into parts only when they clearly ask two things."""
from __future__ import annotations

import pytest

from synthesizer.decompose import sub_questions


@pytest.mark.parametrize("question, parts", [
    ("How do I read a file? How do I write a CSV file with the csv module?",
     ["How do I read a file?", "How do I write a CSV file with the csv module?"]),
    ("How do I copy a list, and why does changing the copy change the original?",
     ["How do I copy a list?", "Why does changing the copy change the original?"]),
    ("What is a lambda; how does it differ from def?", ["What is a lambda?", "How does it differ from def? (lambda)"]),
    ("What is a decorator and how do I write one?", ["What is a decorator?", "How do I write one? (decorator)"]),
])
def test_compound_questions_split_into_searchable_parts(question, parts):
    assert sub_questions(question) == parts


@pytest.mark.parametrize("question", [
    "What are the rules for local and global variables in Python?",  # "and" inside one question
    "Why must self be used explicitly in method definitions and calls?",
    "Is there a scanf() or sscanf() equivalent?",
    "How do I sort a list, and how do I sort it?",  # the second part asks nothing new
    "",
])
def test_single_questions_are_not_split(question):
    assert sub_questions(question) == []


def test_at_most_three_parts():
    q = "What is a tuple? What is a list? What is a set? What is a frozenset? What is a dict?"
    assert len(sub_questions(q)) == 3

"""Dimension-specific prompt templates for IGSP (study, Appendix E.4: "Write a Wikipedia-style article about...",
"Describe an everyday scenario where...", "Write a Python function that...", "Generate a math word problem...").

The study does not list its topics; the ones below are calibkit's, chosen to be generic. A prompt is a template
filled with a topic drawn (seeded) from the dimension's list, and wrapped in the model's chat template when the
tokenizer has one (SmolLM2-Instruct does).
"""
from __future__ import annotations

import numpy as np

TEMPLATES = {
    "General": "Write a Wikipedia-style article about {}.",
    "Commonsense": "Describe an everyday scenario where {}.",
    "Code": "Write a Python function that {}.",
    "Math": "Generate a math word problem about {} and solve it step by step.",
}

TOPICS = {
    "General": ["the history of the printing press", "volcanoes", "the Roman Empire", "photosynthesis", "jazz music",
                "the Pacific Ocean", "railways in Europe", "the human heart", "coffee", "the Moon", "chess",
                "ancient Egypt", "renewable energy", "the Amazon rainforest", "the invention of the telephone",
                "honey bees", "the Olympic Games", "glaciers", "the city of Tokyo", "vaccines"],
    "Commonsense": ["someone forgets their umbrella on a rainy day", "a family prepares dinner together",
                    "a student misses the bus", "two friends plan a picnic", "a child learns to ride a bicycle",
                    "a neighbour's dog is lost", "the power goes out in the evening", "someone spills coffee",
                    "a person moves to a new city", "a shop runs out of bread", "a team loses a close game",
                    "someone waits in a long queue", "a guest arrives early to a party",
                    "a phone battery dies during a trip", "a plant starts to wilt", "a cake burns in the oven"],
    "Code": ["reverses a string", "checks whether a number is prime", "merges two sorted lists",
             "counts word frequencies in a text", "computes the factorial of n", "finds the maximum in a list",
             "removes duplicates from a list while keeping order", "converts Celsius to Fahrenheit",
             "checks whether a string is a palindrome", "returns the n-th Fibonacci number",
             "flattens a nested list", "parses a CSV line into fields", "computes the average of a list",
             "sorts a list of dictionaries by a key", "validates an email address", "implements binary search"],
    "Math": ["buying apples and oranges", "a train travelling between two cities", "sharing candies among children",
             "the area of a rectangular garden", "saving money each week", "the price of a discounted shirt",
             "mixing two juices", "the ages of two siblings", "painting a fence", "a recipe for more guests",
             "the perimeter of a triangle", "filling a water tank", "interest on a savings account",
             "distance, speed and time of a cyclist", "books on shelves", "a fraction of a pizza"],
}


def prompts(dimension: str, count: int, seed: int) -> list[str]:
    if dimension not in TEMPLATES:
        raise ValueError(f"no prompt template for dimension {dimension!r}; known: {', '.join(TEMPLATES)}")
    rng = np.random.default_rng([int(seed), len(dimension), sum(map(ord, dimension))])
    topics = TOPICS[dimension]
    return [TEMPLATES[dimension].format(topics[int(i)]) for i in rng.integers(0, len(topics), count)]


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of a user turn asking ``text`` (chat template when the tokenizer has one)."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                            tokenize=True)
        return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
    return tokenizer(text, add_special_tokens=True)["input_ids"]

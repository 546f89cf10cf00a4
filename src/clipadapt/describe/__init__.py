"""Class descriptions for label-free adaptation (microCLIP's text heads).

`load_descriptions` reads the common `{class: [sentence, ...]}` file and matches it to a
data set's classes; `generate_descriptions` writes such sentences with any
OpenAI-compatible chat endpoint (`clipadapt describe` on the command line).
"""

from clipadapt.describe.client import ChatClient, chat_completions_url
from clipadapt.describe.files import (
    DescriptionMatch,
    UnusedDescriptionsWarning,
    check_distinct_names,
    load_descriptions,
    match_descriptions,
    normalise_class_name,
    read_class_names,
    read_description_file,
)
from clipadapt.describe.generate import (
    AnswerCache,
    DescribeResult,
    default_cache_dir,
    generate_descriptions,
    save_descriptions,
)
from clipadapt.describe.prompting import build_messages, parse_descriptions

__all__ = [
    "AnswerCache", "ChatClient", "DescribeResult", "DescriptionMatch", "UnusedDescriptionsWarning",
    "build_messages", "chat_completions_url", "check_distinct_names", "default_cache_dir", "generate_descriptions",
    "load_descriptions", "match_descriptions", "normalise_class_name", "parse_descriptions", "read_class_names",
    "read_description_file", "save_descriptions",
]

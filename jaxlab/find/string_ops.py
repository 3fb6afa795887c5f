"""The 67 atomic string operations of FIND's string functions, with the behaviour of the released benchmark.

This module is exported as source: a generated `function_code.py` holds the operations it uses (and the
constants they read), copied from here, so every function here must depend only on this module and
`random`. The original's quirks are kept on purpose because they define the released functions (and their
unit tests); each quirk is named in the docstring of the operation that has it.
"""

import random

NUMBER_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty", "twenty-one",
    "twenty-two", "twenty-three", "twenty-four", "twenty-five", "twenty-six", "twenty-seven", "twenty-eight",
    "twenty-nine", "thirty")
VOWELS = "aeiouAEIOU"
# The original's consonant list contains a lowercase 'a' (and no 'A'), so 'a' counts as a consonant.
CONSONANTS = "abcdfghjklmnpqrstvwxyzBCDFGHJKLMNPQRSTVWXYZ"
ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def number_word(n):
  """English word for 0..30; larger counts (and negative ones) raise, as in the original lookup table."""
  if not 0 <= n <= 30:
    raise KeyError(str(n))
  return NUMBER_WORDS[n]


def shift_letter(char, number):
  """Caesar-shifts an ASCII-style letter by `number`, keeping its case; other characters are unchanged."""
  if not char.isalpha():
    return char
  base = ord("a") if char.islower() else ord("A")
  return chr((ord(char) - base + number) % 26 + base)


def shift_at(string, index, number):
  """`string` with the letter at `index` Caesar-shifted by `number`."""
  return string[:index] + shift_letter(string[index], number) + string[index + 1:]


def get_string_length(string):
  """Length as an English word; 'unknown' above thirty."""
  return NUMBER_WORDS[len(string)] if len(string) <= 30 else "unknown"


def get_digit_indexes(string):
  """Quirk: the original resets its list inside the loop, so only a final digit is reported (as the word
  for the position of that digit's first occurrence); otherwise the result is empty."""
  if string and string[-1].isdigit():
    return number_word(string.find(string[-1]))
  return ""


def get_alpha_indexes(string):
  """For each letter, the word for the position of its first occurrence, space-separated."""
  return " ".join(number_word(string.find(char)) for char in string if char.isalpha())


def convert_to_lowercase(string):
  return string.lower()


def convert_to_uppercase(string):
  return string.upper()


def capitalize_string(string):
  return string.capitalize()


def reverse_string(string):
  return string[::-1]


def reverse_string_first_half(string):
  half = len(string) // 2
  return string[:half][::-1] + string[half:]


def reverse_string_last_half(string):
  half = len(string) // 2
  return string[:half] + string[half:][::-1]


def extract_digits(string):
  return " ".join(NUMBER_WORDS[int(char)] for char in string if char.isdigit())


def remove_digits(string):
  return "".join(char for char in string if not char.isdigit())


def extract_uppers(string):
  return "".join(char for char in string if char.isupper())


def remove_whitespace(string):
  return "".join(string.split())


def get_first_character(string):
  return string[0]


def get_last_character(string):
  return string[-1]


def get_mid_character(string):
  """The middle character, or the middle two for an even length."""
  middle = len(string) // 2
  return string[middle - 1:middle + 1] if len(string) % 2 == 0 else string[middle]


def remove_duplicates(string):
  return "".join(dict.fromkeys(string))


def reverse_words(string):
  return " ".join(word[::-1] for word in string.split())


def count_vowels(string):
  return number_word(sum(char in VOWELS for char in string))


def reverse_vowels(string):
  positions = [i for i, char in enumerate(string) if char in VOWELS]
  chars = list(string)
  for i, j in zip(positions, reversed(positions)):
    chars[i] = string[j]
  return "".join(chars)


def capitalize_alternating_letters(string):
  return "".join(char.upper() if i % 2 == 0 else char.lower() for i, char in enumerate(string))


def replace_vowels_with_character(string, char):
  return "".join(char if c in VOWELS else c for c in string)


def replace_vowels_with_first(string):
  return replace_vowels_with_character(string, string[0])


def replace_vowels_with_last(string):
  return replace_vowels_with_character(string, string[-1])


def replace_vowels_with_mid(string):
  if len(string) < 2:
    return string
  return replace_vowels_with_character(string, string[len(string) // 2])


def replace_vowels_with_ind_of_count(string):
  """Vowels become the character at position (number of vowels - 1); with no vowels that is the last one."""
  count = sum(char in VOWELS for char in string)
  return replace_vowels_with_character(string, string[count - 1])


def count_consonants(string):
  return number_word(sum(char in CONSONANTS for char in string))


def count_uppercase(string):
  return number_word(sum(char.isupper() for char in string))


def count_lowercase(string):
  return number_word(sum(char.islower() for char in string))


def count_character_repetitions(string, char):
  return number_word(string.count(char))


def string_strip(string):
  return string.strip()


def string_lstrip(string):
  return string.lstrip()


def string_rstrip(string):
  return string.rstrip()


def add_number_to_string(string, number):
  return "".join(shift_letter(char, number) for char in string)


def subtract_number_to_string(string, number):
  return "".join(shift_letter(char, -number) for char in string)


def advance_by_character_order(string, index):
  """Shifts every letter by the alphabet position of the character at `index`; the result is lowercase."""
  if len(string) < index + 1:
    return string
  order = ord(string[index].lower()) - ord("a")
  return "".join(chr((ord(c.lower()) - ord("a") + order) % 26 + ord("a")) if c.isalpha() else c for c in string)


def substract_by_character_order(string, index):
  """Like `advance_by_character_order`, shifting backwards."""
  if len(string) < index + 1:
    return string
  order = ord(string[index].lower()) - ord("a")
  return "".join(chr((ord(c.lower()) - ord("a") - order) % 26 + ord("a")) if c.isalpha() else c for c in string)


def add_len_to_string(string):
  return add_number_to_string(string, len(string))


def add_number_to_middle(string, number):
  """Shifts the middle letter of an odd-length string (of at least 3 characters) by `number`."""
  if len(string) % 2 == 0 or len(string) < 3:
    return string
  return shift_at(string, len(string) // 2, number)


def subtract_middle_character(string, number):
  return add_number_to_middle(string, -number)


def add_len_to_middle(string):
  return add_number_to_middle(string, len(string))


def add_order_to_inx(string, rng=random):
  """Stochastic: picks a random position on every call and shifts the letter there by that position."""
  if len(string) < 2:
    return string
  index = rng.randint(0, len(string) - 1)
  return shift_at(string, index, index)


def sub_order_to_inx(string, rng=random):
  """Stochastic: like `add_order_to_inx`, shifting backwards."""
  if len(string) < 2:
    return string
  index = rng.randint(0, len(string) - 1)
  return shift_at(string, index, -index)


def add_order_of_inx1_to_inx2(string, index1, index2):
  """Shifts the letter at `index2` forward by `index1`."""
  if len(string) < index1 + 1 or len(string) < index2 + 1:
    return string
  return shift_at(string, index2, index1)


def sub_order_of_inx1_to_inx2(string, index1, index2):
  """Quirk: the original adds instead of subtracting, so this equals `add_order_of_inx1_to_inx2`."""
  return add_order_of_inx1_to_inx2(string, index1, index2)


def insert_number(string, number):
  middle = len(string) // 2
  return string[:middle] + str(number) + string[middle:]


def add_letter_if_needed(string, letter):
  return string if string.endswith(letter) else string + letter


def insert_letter(string, letter):
  middle = len(string) // 2
  return string[:middle] + letter + string[middle:]


def split_string(string, separator):
  return " ".join(string.split(separator))


def string_concatenate(string, suffix):
  return string + suffix


def count_substring(string, substring):
  return number_word(string.count(substring))


def find_string(string, substring):
  position = string.find(substring)
  return "none" if position < 0 else number_word(position)


def remove_substring(string, substring):
  return string.replace(substring, "")


def replace_substring(string, old, new):
  return string.replace(old, new)


def duplicate_first_letter(string):
  return string + string[0]


def duplicate_last_letter(string):
  return string + string[-1]


def duplicate_mid_letter(string):
  return string + string[len(string) // 2]


def swap_first_last(string):
  if len(string) < 2:
    return string
  return string[-1] + string[1:-1] + string[0]


def swap_rand(string, index1, index2):
  if len(string) - 1 < index1 or len(string) - 1 < index2:
    return string
  chars = list(string)
  chars[index1], chars[index2] = string[index2], string[index1]
  return "".join(chars)


def map_string(string, mapping):
  """Maps letters through a permutation of a-z (looked up in lowercase, so mapped letters come out
  lowercase); other characters are unchanged."""
  return "".join(mapping.get(char.lower(), char) for char in string)


def ordinality(char):
  """Alphabet position (a=1) of a letter as a word; 'zero' for a non-letter."""
  char = char.lower()
  if not char.isalpha():
    return "zero"
  return NUMBER_WORDS[ALPHABET.index(char) + 1]


def get_first_character_ordinality(string):
  return ordinality(string[0])


def get_last_character_ordinality(string):
  return ordinality(string[-1])


def get_mid_character_ordinality(string):
  return ordinality(string[len(string) // 2])


def shift_last_letter_rand(string, number):
  """Moves a final letter `number` code points forward ('z'/'Z' wrap to 'a'/'A' whatever `number` is);
  raw code-point arithmetic, so the result need not be a letter."""
  if not string or not string[-1].isalpha():
    return string
  last = {"z": "a", "Z": "A"}.get(string[-1]) or chr(ord(string[-1]) + number)
  return string[:-1] + last


def shift_first_letter_rand(string, number):
  """Like `shift_last_letter_rand`, for the first letter."""
  if not string or not string[0].isalpha():
    return string
  first = {"z": "a", "Z": "A"}.get(string[0]) or chr(ord(string[0]) + number)
  return first + string[1:]


def shift_last_letter_predecessor_rand(string, number):
  """Moves a final letter `number` code points back ('a'/'A' wrap to 'z'/'Z')."""
  if not string or not string[-1].isalpha():
    return string
  last = {"a": "z", "A": "Z"}.get(string[-1]) or chr(ord(string[-1]) - number)
  return string[:-1] + last


def shift_first_letter_predecessor_rand(string, number):
  """Like `shift_last_letter_predecessor_rand`, for the first letter."""
  if not string or not string[0].isalpha():
    return string
  first = {"a": "z", "A": "Z"}.get(string[0]) or chr(ord(string[0]) - number)
  return first + string[1:]

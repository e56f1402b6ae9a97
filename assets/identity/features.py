"""Features for person matching: names, initials, transliteration skeletons, dates, contacts.

Everything is vectorised: string work runs once per DISTINCT value (names repeat a lot) and
is mapped back with pandas, never row by row.

Why a Latin "skeleton": DuckDB's string distances count UTF-8 bytes, not letters, and web and
partner records often carry Latin transliterations. So every name is transliterated
(unidecode), lower-cased, and folded so that the usual spellings of one Russian name collapse
to one key ("Мария", "Mariia", "Maria" -> "mara"; "Дмитрий", "Dmitriy", "Dmitry" -> "dmitri";
"Хабибуллин", "Khabibullin", "Habibulin" -> "habibulin"). Fuzzy comparisons then run on ASCII.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from unidecode import unidecode

#: input contract (see assets/identity/__init__.py)
INPUT_COLUMNS = [
    "source",
    "source_record_id",
    "last_name",
    "first_name",
    "middle_name",
    "fio",
    "birth_date",
    "phone_e164",
    "email",
    "passport_digits",
    "address",
    "contract_numbers",
    "updated_at",
]
#: optional extra columns used by other model profiles (e.g. the English benchmark set)
EXTRA_COLUMNS = ["postcode", "occupation"]

#: columns the splink model reads (produced by `prepare`)
MODEL_COLUMNS = [
    "unique_id",
    "ln",
    "fn",
    "mn",
    "ln_sk",
    "fn_sk",
    "mn_sk",
    "fn_init",
    "mn_init",
    "birth_date",
    "birth_year",
    "phone",
    "email",
    "email_local",
    "passport",
    "address_sk",
    "postcode",
    "occupation",
]

# Spelling folds applied in order to the unidecode'd, lower-cased text.
_SKELETON_RULES: list[tuple[str, str]] = [
    (r"[^a-z ]", ""),
    (r"(ii|iy|yi|yy|ij)", "i"),
    (r"(shch|sch)", "s"),
    (r"sh", "s"),
    (r"ch", "c"),
    (r"zh", "z"),
    (r"kh", "h"),
    (r"(ts|tz)", "c"),
    (r"x", "ks"),
    (r"(yu|iu|ju)", "u"),
    (r"(ya|ia|ja)", "a"),
    # ё: the Cyrillic side folds it to е (normalise_text), so its Latin spellings must fold to
    # e too ("Артём", "Artyom", "Artiom" -> "artem"; "Пётр", "Piotr" -> "petr")
    (r"(yo|io|jo)", "e"),
    (r"(ye|ie|je)", "e"),
    (r"[yj]", "i"),
    (r"w", "v"),
    (r"ph", "f"),
    (r"(.)\1+", r"\1"),
    (r" +", " "),
]

_PATRONYMIC = r"(?:вич|вна|ична|инична|ьич|vich|vna|ichna)$"


def _distinct_map(values: pd.Series, fn) -> pd.Series:
    """Apply a Series->Series function once per distinct non-null value, map it back."""
    uniq = pd.Series(values.dropna().unique(), dtype="object")
    if uniq.empty:
        return pd.Series([None] * len(values), index=values.index, dtype="object")
    out = fn(uniq)
    lookup = pd.Series(out.to_numpy(), index=uniq.to_numpy())
    res = values.map(lookup)
    return res.where(res.notna() & (res != ""), None).astype("object")


def normalise_text(values: pd.Series) -> pd.Series:
    """Lower case, ё->е, dots/dashes to spaces, trimmed; empty -> null."""

    def _norm(s: pd.Series) -> pd.Series:
        s = s.astype(str).str.lower().str.replace("ё", "е", regex=False)
        s = s.str.replace(r"[\.\-_,']", " ", regex=True).str.replace(r"\s+", " ", regex=True)
        return s.str.strip()

    return _distinct_map(values, _norm)


# Russian letters as unidecode writes them (the spelling web users type), applied in C
_RU_LATIN = str.maketrans(
    {
        **dict(zip("абвгдеёзийклмнопрстуфыэ", "abvgdeeziiklmnoprstufye", strict=True)),
        "ж": "zh", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch",
        "ъ": "", "ь": "", "ю": "iu", "я": "ia",
    }
)  # fmt: skip


def to_latin(values: pd.Series) -> pd.Series:
    """Lower-case Latin transliteration; unidecode only for what the Russian table left."""
    s = values.astype(str).str.lower().str.translate(_RU_LATIN)
    rest = ~s.str.match(r"^[\x00-\x7f]*$")
    if rest.any():
        s[rest] = [unidecode(v).lower() for v in s[rest]]
    return s


def skeleton(values: pd.Series) -> pd.Series:
    """Latin, lower-case spelling key of a (Cyrillic or Latin) name."""

    def _skel(s: pd.Series) -> pd.Series:
        s = to_latin(s)
        for pat, rep in _SKELETON_RULES:
            s = s.str.replace(pat, rep, regex=True)
        return s.str.strip()

    return _distinct_map(values, _skel)


def parse_fio(fio: pd.Series) -> pd.DataFrame:
    """Split free-text helpdesk names into last / first / middle names or initials.

    Handles "иванов и.п.", "ким в.", "и.п. иванов", "иванов иван петрович",
    "иван петрович иванов" (patronymic in second place) and "иванов иван".
    Returns columns last_name, first_name, middle_name where a first/middle name that is only
    an initial is one letter.
    """
    norm = normalise_text(fio)
    tokens = norm.fillna("").str.split(" ", n=5, expand=True)
    tokens = tokens.reindex(columns=range(6)).fillna("")
    toks = [tokens[i].astype(str) for i in range(6)]
    is_init = [t.str.len() == 1 for t in toks]
    is_full = [t.str.len() > 1 for t in toks]
    n = len(norm)

    # full tokens in order (up to 3), initials in order (up to 2)
    full = np.full((n, 3), "", dtype=object)
    inits = np.full((n, 2), "", dtype=object)
    nfull = np.zeros(n, dtype=int)
    ninit = np.zeros(n, dtype=int)
    for t, f, i in zip(toks, is_full, is_init, strict=True):
        tv = t.to_numpy(dtype=object)
        fm = f.to_numpy() & (nfull < 3)
        full[fm, nfull[fm]] = tv[fm]
        nfull = nfull + fm
        im = i.to_numpy() & (ninit < 2)
        inits[im, ninit[im]] = tv[im]
        ninit = ninit + im

    f0, f1, f2 = (pd.Series(full[:, k], index=norm.index) for k in range(3))
    pat1 = f1.str.contains(_PATRONYMIC, regex=True)
    pat2 = f2.str.contains(_PATRONYMIC, regex=True)
    nf = pd.Series(nfull, index=norm.index)
    # "иван петрович иванов": patronymic second, not third
    first_mid_last = (nf == 3) & pat1 & ~pat2
    # "иван петрович" (two names, the second a patronymic): no surname
    first_mid = (nf == 2) & pat1

    last = f0.where(~first_mid_last, f2).where(~first_mid, "")
    first = f1.where(~first_mid_last & ~first_mid, f0)
    middle = f2.where(~first_mid_last, f1).where(~first_mid, f1)
    i0 = pd.Series(inits[:, 0], index=norm.index)
    i1 = pd.Series(inits[:, 1], index=norm.index)
    # initials fill whatever name parts are missing: "иванов и.п." / "иванов иван п."
    no_first = first == ""
    middle = middle.where(middle != "", i1.where(no_first, i0))
    first = first.where(~no_first, i0)
    out = pd.DataFrame({"last_name": last, "first_name": first, "middle_name": middle})
    return out.replace("", None).astype("object")


def features_duplicated(df: pd.DataFrame) -> bool:
    return bool(df.duplicated(["source", "source_record_id"]).any())


def record_key(source: pd.Series, source_record_id: pd.Series) -> pd.Series:
    return source.astype(str) + "|" + source_record_id.astype(str)


def record_hash(records: pd.DataFrame) -> pd.Series:
    """A fingerprint (16 hex digits) of the matching fields, to detect changed records."""
    cols = [c for c in INPUT_COLUMNS[2:-1] + EXTRA_COLUMNS if c in records.columns]
    frame = records[cols].astype("string").fillna("\x00")
    h = pd.util.hash_pandas_object(frame, index=False, categorize=True)
    return pd.Series([f"{v:016x}" for v in h.to_numpy()], index=records.index, dtype="object")


def prepare(records: pd.DataFrame) -> pd.DataFrame:
    """Input-contract frame -> the frame the splink model reads (MODEL_COLUMNS + keys)."""
    df = records.copy()
    if df["source"].isna().any() or df["source_record_id"].isna().any():
        raise ValueError("source and source_record_id must not be null")
    if features_duplicated(df):
        raise ValueError("(source, source_record_id) must be unique")
    for c in INPUT_COLUMNS + EXTRA_COLUMNS:
        if c not in df.columns:
            df[c] = None
    df = df.reset_index(drop=True)

    last = normalise_text(df["last_name"])
    first = normalise_text(df["first_name"])
    middle = normalise_text(df["middle_name"])
    has_fio = df["fio"].notna() & last.isna() & first.isna()
    if has_fio.any():
        parsed = parse_fio(df.loc[has_fio, "fio"])
        last = last.where(~has_fio, parsed["last_name"].reindex(df.index))
        first = first.where(~has_fio, parsed["first_name"].reindex(df.index))
        middle = middle.where(~has_fio, parsed["middle_name"].reindex(df.index))
    # names written as one letter ("и") are initials only
    first_is_init = first.str.len() == 1
    middle_is_init = middle.str.len() == 1

    out = pd.DataFrame(
        {
            "unique_id": record_key(df["source"], df["source_record_id"]),
            "source": df["source"].astype(str),
            "source_record_id": df["source_record_id"].astype(str),
        }
    )
    out["ln"] = last
    out["fn"] = first.where(~first_is_init.fillna(False).astype(bool), None)
    out["mn"] = middle.where(~middle_is_init.fillna(False).astype(bool), None)
    out["ln_sk"] = skeleton(last)
    fn_sk_all = skeleton(first)
    mn_sk_all = skeleton(middle)
    out["fn_sk"] = fn_sk_all.where(out["fn"].notna(), None)
    out["mn_sk"] = mn_sk_all.where(out["mn"].notna(), None)
    out["fn_init"] = fn_sk_all.str.slice(0, 1)
    out["mn_init"] = mn_sk_all.str.slice(0, 1)

    bd = pd.to_datetime(df["birth_date"], errors="coerce")
    out["birth_date"] = bd.dt.strftime("%Y-%m-%d").astype("object").where(bd.notna(), None)
    out["birth_year"] = bd.dt.year.astype("Int64").astype("object").where(bd.notna(), None)

    phone = df["phone_e164"].astype("string").str.replace(r"[^\d+]", "", regex=True)
    out["phone"] = phone.where(phone.str.len() >= 8).astype("object")
    email = df["email"].astype("string").str.strip().str.lower()
    email = email.where(email.str.contains("@", regex=False, na=False))
    out["email"] = email.astype("object")
    out["email_local"] = email.str.split("@", n=1).str[0].astype("object")
    pas = df["passport_digits"].astype("string").str.replace(r"\D", "", regex=True)
    out["passport"] = pas.where(pas.str.len() >= 6).astype("object")
    # addresses stay Cyrillic (only normalised): transliterating millions of distinct
    # addresses costs more than the byte-based distance loses
    out["address_sk"] = normalise_text(df["address"])
    out["postcode"] = normalise_text(df["postcode"])
    out["occupation"] = normalise_text(df["occupation"])
    for c in MODEL_COLUMNS:
        out[c] = out[c].astype("object").where(out[c].notna(), None)
    return out


def contact_links(prepared: pd.DataFrame) -> pd.DataFrame:
    """Deterministic links: the same phone (or e-mail) under the same surname and first name.

    Records sharing an exact contact and the transliteration skeletons of surname and first
    name are one person unless something contradicts it: within such a group at most one
    birth date and at most one middle name may appear (missing ones do not count). This ties
    records that splink scores low only because one side lacks a field (a web account with no
    birth date and another e-mail). Groups with a contradiction are left to splink.
    Returns unique_id_l, unique_id_r (each member linked to the group's first record).
    """
    parts = []
    for contact in ("phone", "email"):
        df = prepared[["unique_id", contact, "ln_sk", "fn_sk", "mn_sk", "birth_date"]]
        df = df.dropna(subset=[contact, "ln_sk", "fn_sk"])
        keys = [contact, "ln_sk", "fn_sk"]
        size = df.groupby(keys)["unique_id"].transform("size")
        df = df[size > 1]
        if df.empty:
            continue
        grouped = df.groupby(keys)
        consistent = (grouped["birth_date"].transform("nunique") <= 1) & (
            grouped["mn_sk"].transform("nunique") <= 1
        )
        df = df[consistent]
        first = df.groupby(keys)["unique_id"].transform("min")
        pairs = pd.DataFrame({"unique_id_l": df["unique_id"], "unique_id_r": first})
        parts.append(pairs[pairs["unique_id_l"] != pairs["unique_id_r"]])
    if not parts:
        return pd.DataFrame(columns=["unique_id_l", "unique_id_r"])
    return pd.concat(parts).drop_duplicates().reset_index(drop=True)


#: contact_possible_matches: the most a surname may differ (edits on its skeleton) under a
#: shared contact and first name for the pair to stay a possible match
SURNAME_EDITS = 1


def contact_possible_matches(prepared: pd.DataFrame) -> pd.DataFrame:
    """Pairs that must never be kept apart silently: the same phone (or e-mail) and the same
    first name, surnames at most SURNAME_EDITS edits apart (a typo: Иваова, Иванова), and
    nothing that contradicts (two different birth dates, or two different middle names).

    splink may score such a pair low because the typo'd surname and a missing birth date
    both count against it, and a revocation on one side would then never reach the other. As
    possible matches (identity_ambiguous_matches, for review) they are not merged, but a
    revocation crosses them (DESIGN section 7: a doubtful revocation is honoured).
    Returns unique_id_l < unique_id_r, in order; one join in DuckDB.
    """
    import duckdb

    columns = ["unique_id", "phone", "email", "ln_sk", "fn_sk", "mn_sk", "birth_date"]
    people = prepared[columns].astype({"birth_date": "object"})
    with duckdb.connect() as con:
        con.register("people", people)
        # one equi-join per contact (an OR in the join condition would be a nested loop)
        pairs = " union ".join(
            f"""
            select l.unique_id as unique_id_l, r.unique_id as unique_id_r
            from people l
            join people r
              on l.{contact} = r.{contact} and l.fn_sk = r.fn_sk and l.unique_id < r.unique_id
            where levenshtein(l.ln_sk, r.ln_sk) <= {int(SURNAME_EDITS)}
              and (l.birth_date is null or r.birth_date is null
                   or cast(l.birth_date as varchar) = cast(r.birth_date as varchar))
              and (l.mn_sk is null or r.mn_sk is null or l.mn_sk = r.mn_sk)
            """
            for contact in ("phone", "email")
        )
        found = con.execute(f"select unique_id_l, unique_id_r from ({pairs}) p order by 1, 2").df()
    return found.astype(object)


def contract_links(records: pd.DataFrame) -> pd.DataFrame:
    """Deterministic links: a record quoting a contract owned by exactly one CRM client.

    Returns unique_id_l (the quoting record), unique_id_r (the CRM owner).
    """
    if "contract_numbers" not in records.columns:
        return pd.DataFrame(columns=["unique_id_l", "unique_id_r"])
    df = pd.DataFrame(
        {
            "uid": record_key(records["source"], records["source_record_id"]),
            "source": records["source"].astype(str),
            "contract": records["contract_numbers"],
        }
    ).explode("contract")
    df = df[df["contract"].notna()]
    df["contract"] = df["contract"].astype(str).str.strip().str.upper()
    df = df[df["contract"] != ""].drop_duplicates()
    owners = df[df["source"] == "crm"]
    n_owners = owners.groupby("contract")["uid"].nunique()
    sole = owners[owners["contract"].map(n_owners) == 1][["contract", "uid"]]
    quoting = df[df["source"] != "crm"][["contract", "uid"]]
    links = quoting.merge(sole, on="contract", suffixes=("_l", "_r"))
    links = links.rename(columns={"uid_l": "unique_id_l", "uid_r": "unique_id_r"})
    return links[["unique_id_l", "unique_id_r"]].drop_duplicates().reset_index(drop=True)

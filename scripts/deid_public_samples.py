#!/usr/bin/env python3
"""Turns three labelled public de-identification samples into medllm gold files.

Usage: deid_public_samples.py CACHE_DIR   (scripts/deid-public-samples.sh downloads the
archives into CACHE_DIR/archives/ first). Reads the archives in place, without unpacking
them, and writes CACHE_DIR/philter-lite.jsonl, deidgate.jsonl and presidio.jsonl: one
{"id", "text", "phi": [{"category", "start", "end"}]} per line, offsets in characters
(Python string indices), the format `medllm eval deid --gold` reads. Standard library only.

Every gold span is checked: its offsets lie within the text, and the text between them is
what the source says the span holds (or, where a source span is split into parts below, a
piece of the source span at its place in it).

What each source label becomes, and why. medllm scores HIPAA Safe Harbor identifiers, so a
label that names no Safe Harbor identifier is dropped, and so are states and countries
(Safe Harbor keeps geography down to the state), ages of 89 or less, and a bare year
(Safe Harbor keeps the year).

philter-lite 0.6.0, data/i2b2_xml/*.xml: five i2b2 2014 notes, each with its TEXT and
TAGS (tag name = i2b2 class, TYPE = i2b2 subtype, start/end = character offsets into
TEXT, text = the annotated words). By TYPE:
  PATIENT, DOCTOR, USERNAME -> NAME   (a user name is a clinician's or patient's name handle)
  DATE -> DATE                        (dropped when it is only a year, e.g. "2069")
  AGE -> AGE                          (only when over 89; others dropped)
  PHONE -> PHONE, FAX -> FAX, EMAIL -> EMAIL, URL -> URL, IPADDR -> IP
  SSN -> SSN, MEDICALRECORD -> MRN, HEALTHPLAN -> HEALTH_PLAN, ACCOUNT -> ACCOUNT,
  LICENSE -> LICENSE, VEHICLE -> VEHICLE, DEVICE -> DEVICE
  IDNUM, BIOID -> ID                  (other unique numbers; a biometric id is one)
  HOSPITAL, ORGANIZATION -> HOSPITAL  (medllm's category for named organisations)
  STREET -> ADDRESS, LOCATION-OTHER -> ADDRESS (a named place smaller than a state),
  CITY -> CITY, ZIP -> ZIP
  STATE, COUNTRY -> dropped           (not PHI under Safe Harbor)
  PROFESSION -> dropped               (not one of the 18 identifiers)
  ROOM, DEPARTMENT -> dropped         (a ward or room number names no person)
(The notes in 0.6.0 use DATE, PATIENT, DOCTOR, USERNAME, MEDICALRECORD, IDNUM, PHONE and
HOSPITAL; the rest of the table is there for completeness.)

deidgate 0.1.0, deidgate/data/safeharbor_seed.jsonl: fifteen hand-written sentences, each
with a list of {"value", "category"} and no offsets. Every occurrence of a value in its
sentence is a gold span (deidgate fails a scrubber when a value survives anywhere). By
category:
  name -> NAME, mrn -> MRN, phone -> PHONE, fax -> FAX, email -> EMAIL, ssn -> SSN,
  url -> URL, ip -> IP, device -> DEVICE, vehicle -> VEHICLE, account -> ACCOUNT,
  health_plan -> HEALTH_PLAN, license -> LICENSE
  date -> DATE; but a "94-year-old" style value is an age: AGE on the number alone when over
          89 (medllm marks the number of an age, as `medllm synth` does), dropped otherwise
  geo -> ZIP when it is a postal code, ADDRESS when it starts with a house number,
         CITY otherwise (a town, or a county: medllm files counties under CITY)
  biometric -> ID   (a voiceprint template code: a unique identifying code)
  photo -> ID       (the file name of a full-face photograph; it carries the first name)
  other -> ID       (Safe Harbor's "any other unique identifying number or code")

presidio-evaluator 0.3.2, data/synth_dataset_v2.json: 1,500 template sentences filled with
fake values; "spans" give entity_type, entity_value and start/end positions (characters).
By entity_type:
  PERSON -> NAME
  ORGANIZATION -> HOSPITAL            (named organisations)
  PHONE_NUMBER -> PHONE, or FAX when the template labels it as one ("Fax:", "-Fax", " fax")
  EMAIL_ADDRESS -> EMAIL, DOMAIN_NAME -> URL, IP_ADDRESS -> IP
  US_SSN -> SSN, US_DRIVER_LICENSE -> LICENSE
  CREDIT_CARD, IBAN_CODE -> ACCOUNT   (account numbers)
  DATE_TIME -> DATE; a bare year is dropped, and so is a bare weekday ("Monday"), which
              is no element of a date
  AGE -> AGE when over 89 (none are; all dropped)
  ZIP_CODE -> ZIP
  GPE -> CITY; dropped when it is a country, a state or province, a region code of up to
         three letters ("NS", "SK"), a demonym ("Greenlander") or the generator's "nan"
  STREET_ADDRESS -> split into its parts. The generator fills one placeholder with a whole
         postal address ("6750 Koskikatu 25 Apt. 864\nArtilleros\n, CO\n Uruguay 64677"):
         its street and unit lines become ADDRESS, the town CITY, the postal code ZIP, and
         the state, region code, military post office ("APO AA") and country are dropped.
         A bare number filling a STREET_ADDRESS placeholder right after a GPE one
         ("{{GPE}} {{STREET_ADDRESS}}") is the postal code: ZIP; elsewhere it is a house
         number: ADDRESS. "the corner of A and B" becomes two ADDRESS spans, A and B.
  TITLE, NRP -> dropped               (titles, professions, nationalities, religions,
                                       political groups: no Safe Harbor identifier)
"""

import io
import json
import re
import sys
import tarfile
import xml.etree.ElementTree as ET
import zipfile
from collections import Counter
from pathlib import Path

CATEGORIES = {
    "NAME", "DATE", "AGE", "PHONE", "FAX", "EMAIL", "SSN", "MRN", "HEALTH_PLAN", "ACCOUNT",
    "LICENSE", "VEHICLE", "DEVICE", "URL", "IP", "ADDRESS", "CITY", "ZIP", "HOSPITAL", "ID",
}

# --- places that are not PHI: countries, states and provinces, demonyms --------------------

# Comma-separated, lower case.
COUNTRIES = """
afghanistan, albania, algeria, andorra, angola, argentina, armenia, australia, austria,
azerbaijan, bahamas, bahrain, bangladesh, barbados, belarus, belgium, belize, benin, bhutan,
bolivia, bosnia and herzegovina, botswana, brazil, brunei, bulgaria, burkina faso, burundi,
cambodia, cameroon, canada, cape verde, chad, chile, china, colombia, comoros, congo,
costa rica, croatia, cuba, cyprus, czech republic, czechia, denmark, djibouti, dominica,
dominican republic, ecuador, egypt, el salvador, england, eritrea, estonia, eswatini,
ethiopia, fiji, finland, france, gabon, gambia, georgia, germany, ghana, great britain,
greece, greenland, grenada, guatemala, guinea, guyana, haiti, honduras, hong kong, hungary,
iceland, india, indonesia, iran, iraq, ireland, israel, italy, ivory coast, jamaica, japan,
jordan, kazakhstan, kenya, korea, kosovo, kuwait, kyrgyzstan, laos, latvia, lebanon,
lesotho, liberia, libya, liechtenstein, lithuania, luxembourg, madagascar, malawi,
malaysia, maldives, mali, malta, martinique, mauritania, mauritius, mexico, moldova, monaco,
mongolia, montenegro, morocco, mozambique, myanmar, namibia, nepal, netherlands,
the netherlands, new zealand, nicaragua, niger, nigeria, north korea, north macedonia,
northern ireland, norway, oman, pakistan, panama, papua new guinea, paraguay, peru,
philippines, poland, portugal, puerto rico, qatar, romania, russia, rwanda, san marino,
saudi arabia, scotland, senegal, serbia, seychelles, sierra leone, singapore, slovakia,
slovenia, somalia, south africa, south korea, spain, sri lanka, sudan, suriname, sweden,
switzerland, syria, taiwan, tajikistan, tanzania, thailand, togo, tunisia, turkey,
turkmenistan, uganda, ukraine, united arab emirates, united kingdom, uk, united states,
united states of america, usa, uruguay, uzbekistan, venezuela, vietnam, wales, yemen,
zambia, zimbabwe
"""
DEMONYMS = "greenlander, greenlanders"
# US states, Canadian provinces, Australian, Austrian and German states (the regions the
# presidio generator writes out in full; two- and three-letter codes are caught by shape).
STATES = """
alabama, alaska, arizona, arkansas, california, colorado, connecticut, delaware, florida,
georgia, hawaii, idaho, illinois, indiana, iowa, kansas, kentucky, louisiana, maine,
maryland, massachusetts, michigan, minnesota, mississippi, missouri, montana, nebraska,
nevada, new hampshire, new jersey, new mexico, new york, north carolina, north dakota, ohio,
oklahoma, oregon, pennsylvania, rhode island, south carolina, south dakota, tennessee,
texas, utah, vermont, virginia, washington, west virginia, wisconsin, wyoming,
district of columbia,
alberta, british columbia, manitoba, new brunswick, newfoundland and labrador, nova scotia,
ontario, prince edward island, quebec, saskatchewan, yukon, nunavut, northwest territories,
new south wales, queensland, south australia, tasmania, victoria, western australia,
northern territory, australian capital territory,
burgenland, carinthia, lower austria, upper austria, styria, tyrol, vorarlberg,
baden-württemberg, bavaria, bayern, brandenburg, hesse, hessen, lower saxony,
niedersachsen, mecklenburg-vorpommern, north rhine-westphalia, nordrhein-westfalen,
rhineland-palatinate, rheinland-pfalz, saarland, saxony, sachsen, saxony-anhalt,
sachsen-anhalt, schleswig-holstein, thuringia, thüringen
"""
REGIONS = {" ".join(n.split()) for n in (COUNTRIES + "," + DEMONYMS + "," + STATES).split(",")} - {""}


def named_region(value):
    """A country, a state or province or a demonym, written out ("Cyprus (Greek)" counts as
    Cyprus), or the generator's "nan"."""
    v = re.sub(r"\s*\([^)]*\)\s*$", "", value.strip())
    v = " ".join(v.split()).casefold()
    return v in REGIONS or v == "nan"


def is_region(value):
    """A named region, or a region code of up to three letters ("CO", "NS", "VIC"): not PHI."""
    v = value.strip()
    return not v or named_region(v) or bool(re.fullmatch(r"[^\W\d_]{1,3}", v))


def is_region_code(piece):
    """A region code inside an address: up to three letters, or a number of one or two
    digits (Tunisian governorates, "Cite Sfaxi, 13")."""
    return bool(re.fullmatch(r"[^\W\d_]{1,3}|\d{1,2}", piece.strip()))


# --- helpers ------------------------------------------------------------------------------

def check(doc_id, text, spans):
    """Offsets within the text, no overlaps, categories known; returns spans sorted."""
    spans = sorted(spans, key=lambda s: (s["start"], s["end"]))
    for s in spans:
        assert s["category"] in CATEGORIES, (doc_id, s)
        assert 0 <= s["start"] < s["end"] <= len(text), (doc_id, s, len(text))
        piece = text[s["start"]:s["end"]]
        assert piece == piece.strip() and piece, (doc_id, s, piece)
    for a, b in zip(spans, spans[1:]):
        assert a["end"] <= b["start"], (doc_id, "overlapping spans", a, b)
    return spans


def span(category, start, end):
    return {"category": category, "start": start, "end": end}


def only_year(value):
    v = value.strip().strip(".,")
    return bool(re.fullmatch(r"(?:19|20)\d\d|'\d\d|(?:19|20)\d0'?s|the (?:19|20)\d0'?s", v,
                             re.IGNORECASE))


WEEKDAYS = {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}


def age_over_89(value):
    m = re.search(r"\d+", value)
    return m is not None and int(m.group()) > 89


def read_member(archive, pattern):
    """Members of a .tar.gz or .whl whose path matches pattern: {path: bytes}."""
    out = {}
    if archive.name.endswith(".whl") or archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                if re.search(pattern, name):
                    out[name] = z.read(name)
    else:
        with tarfile.open(archive) as t:
            for m in t.getmembers():
                if m.isfile() and re.search(pattern, m.name):
                    out[m.name] = t.extractfile(m).read()
    if not out:
        sys.exit(f"deid-public-samples: {archive.name} holds no file matching {pattern}")
    return dict(sorted(out.items()))


def find_archive(archives, prefix):
    found = sorted(p for p in archives.iterdir()
                   if p.name.startswith(prefix) and p.name.endswith((".tar.gz", ".whl", ".zip")))
    if not found:
        sys.exit(f"deid-public-samples: no archive {prefix}* in {archives}")
    return found[0]


# --- philter-lite -------------------------------------------------------------------------

I2B2 = {
    "PATIENT": "NAME", "DOCTOR": "NAME", "USERNAME": "NAME",
    "DATE": "DATE", "AGE": "AGE",
    "PHONE": "PHONE", "FAX": "FAX", "EMAIL": "EMAIL", "URL": "URL", "IPADDR": "IP",
    "SSN": "SSN", "MEDICALRECORD": "MRN", "HEALTHPLAN": "HEALTH_PLAN", "ACCOUNT": "ACCOUNT",
    "LICENSE": "LICENSE", "VEHICLE": "VEHICLE", "DEVICE": "DEVICE",
    "IDNUM": "ID", "BIOID": "ID",
    "HOSPITAL": "HOSPITAL", "ORGANIZATION": "HOSPITAL",
    "STREET": "ADDRESS", "LOCATION-OTHER": "ADDRESS", "CITY": "CITY", "ZIP": "ZIP",
    "STATE": None, "COUNTRY": None, "PROFESSION": None, "ROOM": None, "DEPARTMENT": None,
}


def philter(archive, dropped):
    docs = []
    for path, data in read_member(archive, r"/data/i2b2_xml/[^/]+\.xml$").items():
        root = ET.fromstring(data)
        text = root.find("TEXT").text
        spans = []
        for tag in root.find("TAGS"):
            kind = tag.get("TYPE")
            start, end, value = int(tag.get("start")), int(tag.get("end")), tag.get("text")
            assert 0 <= start < end <= len(text), (path, tag.attrib)
            assert text[start:end] == value, (path, tag.attrib, text[start:end])
            if kind not in I2B2:
                sys.exit(f"deid-public-samples: {path}: unknown i2b2 type {kind}")
            category = I2B2[kind]
            if category == "DATE" and only_year(value):
                category = None
            if category == "AGE" and not age_over_89(value):
                category = None
            if category is None:
                dropped[kind] += 1
                continue
            # i2b2 spans are exact; trim stray whitespace only, if any.
            lead = len(value) - len(value.lstrip())
            trail = len(value) - len(value.rstrip())
            spans.append(span(category, start + lead, end - trail))
        doc_id = Path(path).stem
        docs.append({"id": doc_id, "text": text, "phi": check(doc_id, text, spans)})
    return docs


# --- deidgate -----------------------------------------------------------------------------

DEIDGATE = {
    "name": "NAME", "mrn": "MRN", "phone": "PHONE", "fax": "FAX", "email": "EMAIL",
    "ssn": "SSN", "url": "URL", "ip": "IP", "device": "DEVICE", "vehicle": "VEHICLE",
    "account": "ACCOUNT", "health_plan": "HEALTH_PLAN", "license": "LICENSE",
    "date": "DATE", "geo": "GEO", "biometric": "ID", "photo": "ID", "other": "ID",
}
AGE_PHRASE = re.compile(r"(\d+)[- ](?:years?|yrs?|y)[- ]?old|(\d+)\s*(?:yo|y/o)\b", re.I)
POSTAL = re.compile(r"\d{5}(?:-\d{4})?|\d{4}|\d{3} \d{2}|[A-Z]\d[A-Z] ?\d[A-Z]\d|\d{2}-\d{3}")


def deidgate(archive, dropped):
    (path, data), = read_member(archive, r"/safeharbor_seed\.jsonl$").items()
    docs = []
    for line in data.decode("utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        text, spans = record["text"], []
        for item in record["phi"]:
            value, label = item["value"], item["category"].lower()
            if label not in DEIDGATE:
                sys.exit(f"deid-public-samples: {path}: unknown category {label}")
            starts = [m.start() for m in re.finditer(re.escape(value), text)]
            assert starts, (record["id"], value, "value not in text")
            for start in starts:
                end = start + len(value)
                assert text[start:end] == value
                category = DEIDGATE[label]
                if category == "DATE" and (age := AGE_PHRASE.fullmatch(value)):
                    group = 1 if age.group(1) else 2
                    if int(age.group(group)) <= 89:
                        dropped["date (age <= 89)"] += 1
                        continue
                    category = "AGE"
                    start, end = start + age.start(group), start + age.end(group)
                elif category == "DATE" and only_year(value):
                    dropped["date (year only)"] += 1
                    continue
                elif category == "GEO":
                    if POSTAL.fullmatch(value):
                        category = "ZIP"
                    elif re.match(r"\d", value):
                        category = "ADDRESS"
                    elif is_region(value):
                        dropped["geo (state or country)"] += 1
                        continue
                    else:
                        category = "CITY"
                if any(s["start"] < end and start < s["end"] for s in spans):
                    continue  # the same words listed twice
                spans.append(span(category, start, end))
        docs.append({"id": record["id"], "text": text, "phi": check(record["id"], text, spans)})
    return docs


# --- presidio-evaluator -------------------------------------------------------------------

PRESIDIO = {
    "PERSON": "NAME", "ORGANIZATION": "HOSPITAL", "PHONE_NUMBER": "PHONE",
    "EMAIL_ADDRESS": "EMAIL", "DOMAIN_NAME": "URL", "IP_ADDRESS": "IP", "US_SSN": "SSN",
    "US_DRIVER_LICENSE": "LICENSE", "CREDIT_CARD": "ACCOUNT", "IBAN_CODE": "ACCOUNT",
    "DATE_TIME": "DATE", "AGE": "AGE", "ZIP_CODE": "ZIP", "GPE": "CITY",
    "STREET_ADDRESS": "ADDRESS", "TITLE": None, "NRP": None,
}
TRAILING_POSTAL = re.compile(
    r"(?:^|(?<=\s))(\d{5}(?:-\d{3,4})?|\d{4}(?:-\d{3})?|\d{3} \d{2}|\d{2}-\d{3}"
    r"|[A-Z]\d[A-Z] \d[A-Z]\d|\d{4} [A-Z]{2})$")
UNIT_THEN_TOWN = re.compile(r"^(.*\b(?:apt|suite)\.?\s+\d+)\s+([^\d]+)$", re.IGNORECASE)
UNIT = re.compile(r"(?:apt|suite|unit|box|psc|p\.\s?o\.\s+box|postbox)\b", re.IGNORECASE)
MILITARY_PO = re.compile(r"^(?:apo|fpo|dpo)(?:\s+(?:aa|ae|ap))?$", re.IGNORECASE)


def _pieces(text, start, end, sep):
    """(start, end) of the stripped pieces of text[start:end] split on regex sep."""
    out, pos = [], start
    for m in list(re.finditer(sep, text[start:end])) + [None]:
        stop = start + m.start() if m else end
        piece = text[pos:stop]
        lead = len(piece) - len(piece.lstrip())
        trail = len(piece) - len(piece.rstrip())
        if stop - trail > pos + lead:
            out.append((pos + lead, stop - trail))
        if m:
            pos = start + m.end()
    return out


def _strip_trailing_regions(text, start, end):
    """The end of text[start:end] once country, state and region-code words are dropped
    from it (a word is always left)."""
    while True:
        words = [(start + m.start(), start + m.end()) for m in re.finditer(r"\S+", text[start:end])]
        for n in range(min(4, len(words) - 1), 0, -1):
            tail = text[words[-n][0]:end]
            if named_region(tail) or (n == 1 and re.fullmatch(r"[A-Z]{1,3}", tail)):
                end = words[-n - 1][1]
                break
        else:
            return end


def split_address(text, start, end, after_place, dropped):
    """Gold spans for one STREET_ADDRESS value at text[start:end]."""
    value = text[start:end]
    if re.fullmatch(r"\d+", value):
        return [span("ZIP" if after_place else "ADDRESS", start, end)]
    out = []
    segments = _pieces(text, start, end, r"[\n,]")
    for index, (s, e) in enumerate(segments):
        if index > 0 and UNIT.match(text[s:e]):
            out.append(span("ADDRESS", s, e))  # "Suite 245", "Box 8637": no postal code
            continue
        if index > 0:
            m = TRAILING_POSTAL.search(text[s:e])
            if m:
                out.append(span("ZIP", s + m.start(1), s + m.end(1)))
                e = s + len(text[s:s + m.start(1)].rstrip())
                if e <= s:
                    continue
            piece = text[s:e]
            # A short code is a region only once the town is known ("Muel, Z"); before it,
            # a short word is the town itself ("2407 tawastintie 6, sé, portugal").
            town_known = any(p["category"] == "CITY" for p in out)
            if named_region(piece) or MILITARY_PO.match(piece) or (
                    town_known and is_region_code(piece)):
                dropped["STREET_ADDRESS part (state, country, code)"] += 1
                continue
            if re.search(r"\d", piece):
                out.append(span("ADDRESS", s, e))
            else:
                out.append(span("CITY", s, e))
            continue
        # The first line: a street, perhaps followed by a unit, a town and a region.
        e = _strip_trailing_regions(text, s, e)
        if e < segments[0][1]:
            dropped["STREET_ADDRESS part (state, country, code)"] += 1
        corner = re.match(r"(?i)the corner of\s+", text[s:e])
        if corner:
            s += corner.end()
        streets = _pieces(text, s, e, r"\s+and\s+") if corner or " and " in text[s:e] else [(s, e)]
        for ss, se in streets:
            m = UNIT_THEN_TOWN.match(text[ss:se])
            if m and len(segments) == 1:
                town_start = ss + m.start(2)
                town_end = _strip_trailing_regions(text, town_start, se)
                town = text[town_start:town_end]
                if is_region(town):
                    town_end = town_start
                out.append(span("ADDRESS", ss, ss + m.end(1)))
                if town_end > town_start:
                    out.append(span("CITY", town_start, town_end))
            else:
                out.append(span("ADDRESS", ss, se))
    for piece in out:
        assert start <= piece["start"] < piece["end"] <= end
        assert text[piece["start"]:piece["end"]] in value
    return out


def presidio(archive, dropped):
    (path, data), = read_member(archive, r"/data/synth_dataset_v2\.json$").items()
    samples = json.loads(data.decode("utf-8"))
    docs = []
    for number, sample in enumerate(samples):
        text, spans = sample["full_text"], []
        source = sorted(sample["spans"], key=lambda s: s["start_position"])
        for i, item in enumerate(source):
            kind, value = item["entity_type"], item["entity_value"]
            start, end = item["start_position"], item["end_position"]
            assert 0 <= start < end <= len(text), (number, item)
            assert text[start:end] == value, (number, item, text[start:end])
            if kind not in PRESIDIO:
                sys.exit(f"deid-public-samples: {path}: unknown entity type {kind}")
            category = PRESIDIO[kind]
            # Values may carry surrounding blanks; the gold span is the words.
            lead = len(value) - len(value.lstrip())
            start, end = start + lead, end - (len(value) - len(value.rstrip()))
            value = text[start:end]
            if category is None:
                dropped[kind] += 1
                continue
            if category == "DATE" and (only_year(value) or value.casefold() in WEEKDAYS):
                dropped[f"{kind} (year or weekday)"] += 1
                continue
            if category == "AGE" and not age_over_89(value):
                dropped[f"{kind} (<= 89)"] += 1
                continue
            if category == "CITY" and is_region(value):
                dropped[f"{kind} (country, state, code)"] += 1
                continue
            if category == "PHONE":
                before = text[max(0, start - 6):start].casefold()
                after = text[end:end + 5].casefold()
                if "fax" in before or re.match(r"[- ]fax\b", after):
                    category = "FAX"
            if category == "ADDRESS":
                previous = source[i - 1] if i > 0 else None
                after_place = (previous is not None and previous["entity_type"] == "GPE"
                               and text[previous["end_position"]:item["start_position"]].strip() == "")
                spans.extend(split_address(text, start, end, after_place, dropped))
                continue
            spans.append(span(category, start, end))
        doc_id = f"presidio-{number:04d}"
        docs.append({"id": doc_id, "text": text, "phi": check(doc_id, text, spans)})
    return docs


# --- main ---------------------------------------------------------------------------------

def write(path, docs):
    tmp = path.with_suffix(".jsonl.partial")
    with open(tmp, "w", encoding="utf-8") as f:
        for doc in docs:
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
    tmp.replace(path)


def report(name, path, docs, dropped):
    counts = Counter(s["category"] for d in docs for s in d["phi"])
    total = sum(counts.values())
    print(f"{name}: {path}")
    print(f"  documents {len(docs)}, gold spans {total}")
    for category, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"    {category:<12} {n}")
    if dropped:
        print("  dropped source labels: " + ", ".join(
            f"{k} {v}" for k, v in sorted(dropped.items(), key=lambda kv: (-kv[1], kv[0]))))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: deid_public_samples.py CACHE_DIR")
    cache = Path(sys.argv[1])
    archives = cache / "archives"
    jobs = [
        ("philter-lite 0.6.0", "philter_lite-0.6.0", "philter-lite.jsonl", philter),
        ("deidgate 0.1.0", "deidgate-0.1.0", "deidgate.jsonl", deidgate),
        ("presidio-evaluator 0.3.2", "presidio_evaluator-0.3.2", "presidio.jsonl", presidio),
    ]
    for name, prefix, out, convert in jobs:
        dropped = Counter()
        docs = convert(find_archive(archives, prefix), dropped)
        write(cache / out, docs)
        report(name, cache / out, docs, dropped)


if __name__ == "__main__":
    main()

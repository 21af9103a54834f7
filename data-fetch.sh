#!/usr/bin/env bash
# Make the real DICOM test corpus available to the tests at data/corpus/ (inside this repo).
# Run ./data-fetch.sh --help for details.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
DATA="$ROOT/data"
LINK="$DATA/corpus"
CACHE="$DATA/.cache"
SHARED="$ROOT/../shared/corpus"
GIT_BASE="${DICOMRECON_GIT_BASE:-https://github.com}"
GIT_BASE="${GIT_BASE%/}"
# First line of the README written by a rebuild: marks data/corpus as ours (safe to replace).
MARKER="# Real DICOM corpus (fetched by data-fetch.sh)"

usage() {
    cat <<EOF
Usage: ./data-fetch.sh [--help]

Makes the real DICOM test corpus available at data/corpus/ (relative to this script).

  1. If DICOMRECON_CORPUS is set, data/corpus becomes a symlink to that folder
     (it must contain README.md).
  2. Else, if ../shared/corpus (beside this repo) exists and contains README.md,
     data/corpus becomes a symlink to it. The shared corpus is never copied or modified.
  3. Else the corpus is rebuilt from the public source repositories: a shallow, sparse,
     blob-less git clone of each repo into data/.cache/, then the files are copied into
     data/corpus/FOLDER/ as the table inside this script says. Needs git, network access
     to GitHub, and unzip (or python3). Every folder's file count is checked.

Environment:
  DICOMRECON_CORPUS    use this corpus folder instead (symlinked, never copied)
  DICOMRECON_GIT_BASE  base URL of the source repositories (default https://github.com;
                       e.g. file:///path/to/mirrors for a local mirror OWNER/REPO layout)

Running it again is safe: a symlink is replaced; a rebuilt copy is rebuilt from the cache.
EOF
}

die() { echo "data-fetch.sh: error: $*" >&2; exit 1; }
say() { echo "data-fetch.sh: $*"; }

case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    "") ;;
    *) usage >&2; die "unknown argument: $1" ;;
esac

# Remove data/corpus if it is a symlink or a copy made by this script; refuse otherwise.
clear_target() {
    if [ -L "$LINK" ]; then
        rm -f "$LINK"
    elif [ -d "$LINK" ]; then
        if [ -f "$LINK/README.md" ] && [ "$(head -n 1 "$LINK/README.md")" = "$MARKER" ]; then
            say "removing the previously fetched copy in $LINK"
            rm -rf "$LINK"
        else
            die "$LINK is a real folder not made by data-fetch.sh; move it away and rerun"
        fi
    elif [ -e "$LINK" ]; then
        die "$LINK exists and is not a folder or symlink; move it away and rerun"
    fi
}

link_corpus() {  # $1: corpus folder, $2: description
    local target
    [ -d "$1" ] || die "$2 $1 is not a folder"
    [ -f "$1/README.md" ] || die "$2 $1 has no README.md (not a corpus folder?)"
    target="$(cd "$1" && pwd -P)"
    mkdir -p "$DATA"
    clear_target
    ln -s "$target" "$LINK"
    say "corpus comes from $2: $LINK -> $target"
    say "$(find "$LINK/" -mindepth 1 -maxdepth 1 -type d | wc -l) corpus folders available"
}

if [ -n "${DICOMRECON_CORPUS:-}" ]; then
    link_corpus "$DICOMRECON_CORPUS" "DICOMRECON_CORPUS"
    exit 0
fi
if [ -f "$SHARED/README.md" ]; then
    link_corpus "$SHARED" "the shared corpus"
    exit 0
fi

# ---------------------------------------------------------------------------------------
# Rebuild from the public source repositories.
#
# One line per corpus folder:  folder|OWNER/REPO|kind|files|source|names
#   dir    copy the files directly inside each source folder (space-separated list of
#          folders; several folders are flattened into one)
#   tree   copy the listed entries (names, comma-separated) of the source folder, keeping
#          their sub-folders
#   files  copy only the listed files (names, comma-separated) of the source folder
#   zip    unzip the source zip and copy the listed files (flattened)
# "files" is the number of files the folder must end up with (checked).
# Where the README's mapping does not pin the file set, the names are those present in
# the shared corpus. enh_philips_b0: the README says "only IM_0001 present", but the one
# file it holds is IM_0027_fMAP.dcm, which is what is copied here.
# ---------------------------------------------------------------------------------------
TABLE='
ct_ge_tilt18p5_varspacing|neurolabusc/dcm_qa_ct|dir|28|In/GE|
ct_philips_s21610_s3010_tilt16p5|neurolabusc/dcm_qa_ct|dir|59|In/Philips/S21610/S3010|
ct_philips_s21570_session_mixed|neurolabusc/dcm_qa_ct|tree|39|In/Philips/S21570|S1000,S2010,S4010,DIRFILE
d2n_ct_ge_missing_slice|icometrix/dicom2nifti|files|4|tests/data/failing/sliceincrement/001|IM-0001-0007-0001.dcm,IM-0001-0008-0001.dcm,IM-0001-0009-0001.dcm,IM-0001-0010-0001.dcm
d2n_ct_siemens_same_position|icometrix/dicom2nifti|files|4|tests/data/failing/notavolume/001|001.dcm,002.dcm,003.dcm,004.dcm
dnp_ct_kits_dupe_positions|innolitics/dicom-numpy|zip|11|tests/dupe-positions.zip|CT2.dcm,CT20.dcm,CT21.dcm,CT22.dcm,CT23.dcm,CT24.dcm,CT25.dcm,CT26.dcm,CT27.dcm,CT28.dcm,CT29.dcm
pyd_ect_enhanced_2frame|pydicom/pydicom-data|files|1|data_store/data|eCT_Supplemental.dcm
decub_si_t1sag_hfdl|neurolabusc/dcm_qa_decubitus|dir|35|In/HFDL/2_t1_fl2d_sag|
table_ge_exam1486_flat_mixed|neurolabusc/dcm_qa_table|dir|71|In/GE/Exam1486_Laser794mm/01_3_Plane_Localizer_FF In/GE/Exam1486_Laser794mm/02_Ax_fMRI_FF_I11.1_S15.9|
table_ph_dual_echo|neurolabusc/dcm_qa_table|dir|120|In/Ph/1301_Dual-echo_iso|
d2n_mr_philips_mixed_orientation|icometrix/dicom2nifti|files|4|tests/data/failing/sliceorientation/001|IM-0001-0001-0001 2.dcm,IM-0001-0001-0001.dcm,IM-0001-0002-0001 2.dcm,IM-0001-0002-0001.dcm
d2n_mr_pmod_per_slice_rescale|icometrix/dicom2nifti|files|4|tests/data/generic/anatomical/002_non_isotropic|001.dcm,002.dcm,003.dcm,004.dcm
d2n_mr_rle|icometrix/dicom2nifti|files|4|tests/data/generic/compressed_rle/001|IM-0001-0001-0001.dcm,IM-0001-0002-0001.dcm,IM-0001-0003-0001.dcm,IM-0001-0004-0001.dcm
d2n_mr_jpegls|icometrix/dicom2nifti|files|4|tests/data/generic/compressed_jpegls/001|IM-0001-0001-0001.dcm,IM-0001-0002-0001.dcm,IM-0001-0003-0001.dcm,IM-0001-0004-0001.dcm
d2n_mr_jpeg_lossless|icometrix/dicom2nifti|files|4|tests/data/generic/compressed_jpeg/001|IM-0001-0001-0001.dcm,IM-0001-0002-0001.dcm,IM-0001-0003-0001.dcm,IM-0001-0004-0001.dcm
d2n_mr_rgb_j2k|icometrix/dicom2nifti|files|4|tests/data/generic/rgb/001|IM-0001-0001-0001.dcm,IM-0001-0002-0001.dcm,IM-0001-0003-0001.dcm,IM-0001-0004-0001.dcm
d2n_mr_hitachi_oblique39|icometrix/dicom2nifti|files|4|tests/data/hitachi/anatomical/001|001.dcm,002.dcm,003.dcm,004.dcm
d2n_mr_siemens_enhanced_mf|icometrix/dicom2nifti|files|1|tests/data/siemens_multiframe/anatomical/001|IM-0001-0001-0001.dcm
sag_si_xa30_enhanced_4d|neurolabusc/dcm_qa_sag|dir|5|In/XA30/enhanced/5_Product_EPI_Sag_Ascending|
enh_philips_b0|neurolabusc/dcm_qa_enh|files|1|In/Philips|IM_0027_fMAP.dcm
uih_dti_vframe_no_ipp|neurolabusc/dcm_qa_uih|dir|17|In/DTI_132225/dti_tra_dir16_PA_rot_SaveBySlc__134057|
ge_fmri_multiphase_4d|neurolabusc/dcm_qa_ge|dir|100|In/SliceTimingMPh/2_fMRI_Multiphase_Des|
ts_si_mosaic_9ts|neurolabusc/dcm_qa_ts|dir|9|In|
pyd_cr_monochrome1_j2kr|pydicom/pydicom-data|files|1|data_store/data|RG3_J2KR.dcm
pyd_emri_small_rle|pydicom/pydicom-data|files|1|data_store/data|emri_small_RLE.dcm
d2n_mr_slicecount2|icometrix/dicom2nifti|files|2|tests/data/failing/slicecount/001|IM-0001-0001-0001.dcm,IM-0001-0002-0001.dcm
'

say "no shared corpus at $SHARED and DICOMRECON_CORPUS not set:"
say "rebuilding the corpus from the public repositories at $GIT_BASE"
command -v git >/dev/null 2>&1 || die "git is not installed; it is needed to fetch the corpus"
if command -v unzip >/dev/null 2>&1; then
    unzip_to() { unzip -q -o "$1" -d "$2"; }
elif command -v python3 >/dev/null 2>&1; then
    unzip_to() { python3 -m zipfile -e "$1" "$2"; }
else
    die "neither unzip nor python3 is installed; one is needed to unpack dupe-positions.zip"
fi

# Sparse-checkout patterns (non-cone, anchored at the repo root), one per line, per repo.
declare -A PATTERNS=()
REPOS=()
add_pattern() {
    if [ -z "${PATTERNS[$1]+x}" ]; then REPOS+=("$1"); PATTERNS[$1]=""; fi
    PATTERNS[$1]+="$2"$'\n'
}
while IFS='|' read -r folder repo kind count src names; do
    [ -n "$folder" ] || continue
    case "$kind" in
        dir)   for s in $src; do add_pattern "$repo" "/$s/"; done ;;
        tree|files)
               IFS=',' read -r -a items <<<"$names"
               for n in "${items[@]}"; do add_pattern "$repo" "/$src/$n"; done ;;
        zip)   add_pattern "$repo" "/$src" ;;
        *)     die "bad kind '$kind' for $folder in the table" ;;
    esac
done <<<"$TABLE"

repo_dir() { echo "$CACHE/${1//\//__}"; }

mkdir -p "$CACHE"
export GIT_TERMINAL_PROMPT=0  # a missing/renamed repo must fail, not ask for a password
for repo in "${REPOS[@]}"; do
    dir="$(repo_dir "$repo")"
    url="$GIT_BASE/$repo"
    if [ -d "$dir/.git" ] && [ "$(git -C "$dir" remote get-url origin 2>/dev/null)" = "$url" ] \
        && git -C "$dir" rev-parse -q --verify HEAD >/dev/null 2>&1; then
        say "using cached clone of $repo"
    else
        rm -rf "$dir"
        say "cloning $url (shallow, sparse)"
        git clone --quiet --depth 1 --filter=blob:none --sparse "$url" "$dir" \
            || die "could not clone $url (is the network up and the repository reachable?)"
    fi
    mapfile -t pats < <(printf '%s' "${PATTERNS[$repo]}")
    git -C "$dir" sparse-checkout set --no-cone "${pats[@]}" \
        || die "git sparse-checkout failed in $dir (needs git >= 2.36 and the network to fetch files)"
done

BUILD="$DATA/corpus.partial"
rm -rf "$BUILD"
mkdir -p "$BUILD"
trap 'rm -rf "$BUILD"' EXIT

copy_file() {  # $1 source file, $2 destination folder
    [ -f "$1" ] || die "missing in the source repository: $1"
    [ ! -e "$2/$(basename "$1")" ] || die "name clash when copying $1 into $2"
    cp "$1" "$2/"
}

while IFS='|' read -r folder repo kind count src names; do
    [ -n "$folder" ] || continue
    base="$(repo_dir "$repo")"
    dest="$BUILD/$folder"
    mkdir -p "$dest"
    IFS=',' read -r -a items <<<"$names"
    case "$kind" in
        dir)
            for s in $src; do
                [ -d "$base/$s" ] || die "missing in $repo: $s"
                while IFS= read -r -d '' f; do copy_file "$f" "$dest"; done \
                    < <(find "$base/$s" -mindepth 1 -maxdepth 1 -type f ! -name '.*' -print0)
            done ;;
        tree)
            for n in "${items[@]}"; do
                [ -e "$base/$src/$n" ] || die "missing in $repo: $src/$n"
                cp -R "$base/$src/$n" "$dest/"
            done ;;
        files)
            for n in "${items[@]}"; do copy_file "$base/$src/$n" "$dest"; done ;;
        zip)
            [ -f "$base/$src" ] || die "missing in $repo: $src"
            unz="$CACHE/unzip-$folder"
            rm -rf "$unz"
            mkdir -p "$unz"
            unzip_to "$base/$src" "$unz" || die "could not unpack $repo: $src"
            for n in "${items[@]}"; do
                mapfile -t hits < <(find "$unz" -type f -name "$n" ! -path '*/__MACOSX/*')
                [ "${#hits[@]}" -eq 1 ] || die "expected one $n in $src, found ${#hits[@]}"
                copy_file "${hits[0]}" "$dest"
            done
            rm -rf "$unz" ;;
    esac
    got="$(find "$dest" -type f | wc -l)"
    [ "$got" -eq "$count" ] || die "$folder: expected $count files from $repo: $src, got $got"
done <<<"$TABLE"

lfs="$(grep -rlI '^version https://git-lfs' "$BUILD" || true)"
[ -z "$lfs" ] || die "got Git LFS pointer files instead of data (install git-lfs?): $lfs"

{
    echo "$MARKER"
    echo
    echo "Real public DICOM data, fetched by data-fetch.sh from public repositories ($GIT_BASE)"
    echo "on $(date -u +%Y-%m-%d), copied byte for byte (dnp_ct_kits_dupe_positions is unpacked"
    echo "from a zip). Licences are those of the source repositories (BSD-2-Clause for"
    echo "neurolabusc/dcm_qa_*, MIT for icometrix/dicom2nifti and pydicom/pydicom-data, CC BY 3.0"
    echo "data in innolitics/dicom-numpy). The full description of each folder is in the shared"
    echo "corpus README that this copy stands in for."
    echo
    echo "| folder | source (repo: path) | files |"
    echo "|---|---|---|"
    while IFS='|' read -r folder repo kind count src names; do
        [ -n "$folder" ] || continue
        case "$kind" in
            dir)   s="${src// / + }" ;;
            tree|files) s="$src/{$names}" ;;
            zip)   s="$src (unzipped)" ;;
        esac
        echo "| $folder | $repo: $s | $count |"
    done <<<"$TABLE"
} >"$BUILD/README.md"

clear_target
mv "$BUILD" "$LINK"
trap - EXIT
say "corpus rebuilt in $LINK ($(find "$LINK/" -mindepth 1 -maxdepth 1 -type d | wc -l) folders)"

# sourced at the end of path.sh (ESPnet's TEMPLATE).
# SCTK's sclite (asr.sh stage 13): Debian's and Ubuntu's package `sctk` (apt-get install sctk) puts it in
# /usr/lib/sctk/bin, which is not on PATH; ESPnet's own build (tools/installers/install_sctk.sh) is found
# through tools/extra_path.sh.
if ! command -v sclite >/dev/null 2>&1 && [ -x /usr/lib/sctk/bin/sclite ]; then
    export PATH="${PATH}:/usr/lib/sctk/bin"
fi

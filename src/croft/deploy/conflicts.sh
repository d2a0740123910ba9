# croft diff, on the target: sh -s -- CROFT_DIR; croft appends the paths as a here-document of
# the loop, "d PATH" (a directory croft would make) or "f PATH" (a file or link) per line. Prints
# those that exist and are not croft's: a deploy refuses them unless the site adopts them.
croft=$1
while read -r kind path; do
    [ -e "/$path" ] || [ -L "/$path" ] || continue
    case $(readlink "/$path") in "$croft"/*) continue ;; esac
    [ "$kind" = d ] && [ -d "/$path" ] && [ ! -L "/$path" ] && continue
    echo "/$path"
done

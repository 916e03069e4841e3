"""The headers archive itself: found in a kernel (symbols, markers, carving), its xz stream's exact
end, the one tar walker, and unpacking (listing, member lookup, salvage)."""

"""The one ELF reader (headers, sections, symbols, notes) that images, dumps and analysis share."""

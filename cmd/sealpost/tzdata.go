package main

// Office hours name IANA time zones; a machine or image without
// /usr/share/zoneinfo would refuse every [hours] timezone. The embedded
// database (about 450 KB) is used only where the system has none.
import _ "time/tzdata"

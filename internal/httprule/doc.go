// Package httprule reads google.api.http path templates and matches request
// paths against many of them, as a gRPC-JSON transcoding gateway does.
//
// # Templates
//
// Parse reads the grammar of google/api/http.proto:
//
//	Template  = "/" Segments [ Verb ] ;
//	Segments  = Segment { "/" Segment } ;
//	Segment   = "*" | "**" | LITERAL | Variable ;
//	Variable  = "{" FieldPath [ "=" Segments ] "}" ;
//	FieldPath = IDENT { "." IDENT } ;
//	Verb      = ":" LITERAL ;
//
// and "/" alone, the root, as Envoy and grpc-gateway accept it. A LITERAL is
// RFC 3986 pchars but ":" (the grammar gives it to the verb), with valid
// percent-escapes; an IDENT is a proto field name. Refused: a missing
// leading "/", empty segments (so no trailing "/"), "**" anywhere but last
// (Envoy accepts literals after it; http.proto does not), nested
// variables, a field path bound twice or inside another, and any other
// character. A *ParseError says what and at which byte.
//
// Template.String is canonical: {id} and {id=*} are both written {id}, and
// literals are percent-decoded and re-encoded where they must be (upper-case
// hexadecimal), so %61pp and app are one literal. Template.Pattern also
// erases variable names: templates with equal Patterns match the same paths.
//
// # Matching
//
// Match follows the path matcher of Envoy's gRPC-JSON transcoder
// (grpc-httpjson-transcoding's PathMatcher), a trie of segments:
//
//   - The query is ignored; trailing empty segments are dropped ("/a/" is
//     "/a"); an empty segment inside the path is a segment, which "*" matches.
//   - The verb: when the last segment has a ":" and the text after the last
//     one is a verb that some rule declares, it is split off and must equal
//     the rule's verb. Otherwise the ":" and what follows stay part of the
//     segment, so {name} binds "x:y" when no rule declares y. A rule without
//     a verb never matches a path whose verb was split off.
//   - Depth first, at each segment a literal before "*" before "**", and the
//     method is checked where a template ends: a branch without a rule for
//     the request's method and verb is left for the next one. A template
//     that ends at the path's last segment beats a "**" matching nothing.
//   - A request segment matches a literal when both are equal percent-decoded:
//     /v1/%61pp matches the literal app. (Envoy compares the raw segment,
//     leaving equivalence to its path normalization; http.proto asks that
//     reserved characters in literals be percent-encoded, which decoding both
//     sides honours.) Only a raw ":" can start a verb.
//   - Variables are decoded as http.proto says: one that matches a single
//     segment ({id}, {id=*}) fully; one that may span several ({p=a/*},
//     {p=**}, even when it matched one segment) fully but for "%2F" and
//     "%2f", which stay encoded. A "%" not followed by two hexadecimal
//     digits stays as it is. (Envoy's default leaves every reserved
//     character encoded in multi-segment values; http.proto's rule is the
//     one kept here.)
//   - Rules with the same method and Pattern: the first given wins and the
//     others are reported by Shadowed. Envoy marks such a path as
//     registered twice and matches neither.
//   - When no rule of the method matches but rules of other methods do, the
//     status is MethodNotAllowed and Allow lists those methods.
//
// grpc-gateway's runtime.ServeMux decides differently: per method it tries
// its patterns one after the other, the last registered first, and the first
// that matches wins, however specific the others are; literals are compared
// raw; a pattern without a verb matches a path with one by putting ":verb"
// back on the last segment. So for GET /v1/app/type/special with
// /v1/app/type/{id} registered after /v1/app/type/special, grpc-gateway
// answers {id}, and this package answers the literal wherever it is in the
// list. The trie's answer is independent of the order of rules but for
// shadowed ones, which is what a registry serving many apps needs.
//
// Overlap tells whether two templates can match one path, and
// Matcher.Overlaps lists every such pair of rules of one method, for listing
// conflicts between apps.
package httprule

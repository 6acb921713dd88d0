//! Whether a failed ClickHouse statement is worth trying again.
//!
//! The one question a loader must answer about every error: will the same statement with the
//! same rows succeed later (ClickHouse down, overloaded, a network fault), or does the server
//! refuse these rows for good (a value it cannot parse or store, a violated constraint)? Retrying
//! the second kind forever stalls a pipeline behind one bad row; giving up on the first kind
//! loses data. The server names its reason with a numeric code (`Code: NNN. DB::Exception: …`
//! in the response body, and the `X-ClickHouse-Exception-Code` header); the codes below are the
//! ones that mean "this data is bad", everything else is treated as retryable.

/// What to do about a failed statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// May succeed if sent again unchanged: network faults, timeouts, an overloaded or
    /// unavailable server (5xx without a data-error code), `TOO_MANY_PARTS`,
    /// `MEMORY_LIMIT_EXCEEDED`, schema not (yet) migrated, and any error not known to be
    /// permanent.
    Retryable,
    /// The server refuses the data itself and will refuse it again: a smaller set of rows
    /// without the offending ones can succeed.
    Permanent,
}

/// ClickHouse exception codes that mean the inserted data itself is refused (numbers from
/// `src/Common/ErrorCodes.cpp`, checked against the 26.9 engine with `errorCodeToName`).
///
/// Deliberately absent, hence retryable: codes that also arise from a cut connection
/// (`UNEXPECTED_END_OF_FILE` 3, `ATTEMPT_TO_READ_AFTER_EOF` 32, `CANNOT_READ_ALL_DATA` 33),
/// schema/deployment problems that no subset of rows fixes (`NO_SUCH_COLUMN_IN_TABLE` 16,
/// `UNKNOWN_TABLE` 60, `UNKNOWN_DATABASE` 81, `INCORRECT_NUMBER_OF_COLUMNS` 7, `ILLEGAL_COLUMN`
/// 44, `READONLY` 164, `TABLE_IS_READ_ONLY` 242), the catch-all `BAD_ARGUMENTS` 36 (also a bad
/// setting), and load or capacity limits (`TOO_MANY_PARTS` 252, which is also "too many
/// partitions for single INSERT block", `MEMORY_LIMIT_EXCEEDED` 241, `TIMEOUT_EXCEEDED` 159,
/// `TOO_MANY_SIMULTANEOUS_QUERIES` 202, `NOT_ENOUGH_SPACE` 243, …).
pub const PERMANENT_EXCEPTION_CODES: &[(u32, &str)] = &[
    (6, "CANNOT_PARSE_TEXT"),
    (25, "CANNOT_PARSE_ESCAPE_SEQUENCE"),
    (26, "CANNOT_PARSE_QUOTED_STRING"),
    (27, "CANNOT_PARSE_INPUT_ASSERTION_FAILED"),
    (38, "CANNOT_PARSE_DATE"),
    (41, "CANNOT_PARSE_DATETIME"),
    (53, "TYPE_MISMATCH"),
    (69, "ARGUMENT_OUT_OF_BOUND"),
    (70, "CANNOT_CONVERT_TYPE"),
    (72, "CANNOT_PARSE_NUMBER"),
    (117, "INCORRECT_DATA"),
    (128, "TOO_LARGE_ARRAY_SIZE"),
    (130, "CANNOT_READ_ARRAY_FROM_TEXT"),
    (131, "TOO_LARGE_STRING_SIZE"),
    (153, "ILLEGAL_DIVISION"),
    (190, "SIZES_OF_ARRAYS_DONT_MATCH"),
    (321, "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE"),
    (349, "CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN"),
    (376, "CANNOT_PARSE_UUID"),
    (395, "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO"),
    (407, "DECIMAL_OVERFLOW"),
    (441, "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING"),
    (467, "CANNOT_PARSE_BOOL"),
    (469, "VIOLATED_CONSTRAINT"),
    (632, "UNEXPECTED_DATA_AFTER_PARSED_VALUE"),
    (675, "CANNOT_PARSE_IPV4"),
    (676, "CANNOT_PARSE_IPV6"),
    (691, "UNKNOWN_ELEMENT_OF_ENUM"),
];

/// Classifies an error from the `clickhouse` crate: [`ErrorClass::Permanent`] only when the
/// server answered with an exception code of [`PERMANENT_EXCEPTION_CODES`]; network faults,
/// timeouts, HTTP errors without such a code (e.g. a proxy's 502/503) and every other code
/// are [`ErrorClass::Retryable`]. Erring towards retrying keeps data: an unknown error stalls
/// the loader (visibly: logs, retry metric) instead of diverting rows it could still load.
pub fn classify_error(error: &clickhouse::error::Error) -> ErrorClass {
    let clickhouse::error::Error::BadResponse(message) = error else {
        // Network, TimedOut, and client-side errors (compression, schema validation of the
        // row type) say nothing against the rows themselves.
        return ErrorClass::Retryable;
    };
    match exception_code(message) {
        Some(code)
            if PERMANENT_EXCEPTION_CODES
                .iter()
                .any(|(known, _)| *known == code) =>
        {
            ErrorClass::Permanent
        }
        _ => ErrorClass::Retryable,
    }
}

/// The exception code of a server message: the number after its first `Code: ` (the body
/// `Code: 469. DB::Exception: …`, or `Code: 469` when the client only had the
/// `X-ClickHouse-Exception-Code` header).
pub fn exception_code(message: &str) -> Option<u32> {
    let (_, rest) = message.split_once("Code: ")?;
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .map_or(rest, |end| &rest[..end]);
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use clickhouse::error::Error;

    use super::*;

    fn bad_response(message: &str) -> Error {
        Error::BadResponse(message.to_owned())
    }

    #[test]
    fn data_errors_named_by_the_server_are_permanent() {
        for message in [
            "Code: 469. DB::Exception: Constraint `price_below_one` for table db.t (0501191a) is violated at row 2. Expression: (price < 1). Column values: price = '2'. (VIOLATED_CONSTRAINT) (version 26.9.2.1)",
            "Code: 6. DB::Exception: Cannot parse string 'x' as Int64. (CANNOT_PARSE_TEXT)",
            "Code: 53. DB::Exception: Type mismatch. (TYPE_MISMATCH)",
            "Code: 321. DB::Exception: Value out of range. (VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE)",
            "Code: 69. DB::Exception: Scale out of bound. (ARGUMENT_OUT_OF_BOUND)",
            "Code: 117. DB::Exception: Incorrect data. (INCORRECT_DATA)",
            "Code: 407. DB::Exception: Decimal overflow. (DECIMAL_OVERFLOW)",
            "Code: 691. DB::Exception: Unknown element 'X' for enum. (UNKNOWN_ELEMENT_OF_ENUM)",
            // Only the header's code, when the body could not be read.
            "Code: 469",
        ] {
            assert_eq!(
                classify_error(&bad_response(message)),
                ErrorClass::Permanent,
                "{message}"
            );
        }
    }

    #[test]
    fn load_limits_outages_and_schema_problems_are_retryable() {
        for message in [
            "Code: 252. DB::Exception: Too many parts (300). Merges are processing significantly slower than inserts. (TOO_MANY_PARTS)",
            "Code: 252. DB::Exception: Too many partitions for single INSERT block (more than 100). (TOO_MANY_PARTS)",
            "Code: 241. DB::Exception: Memory limit (total) exceeded. (MEMORY_LIMIT_EXCEEDED)",
            "Code: 159. DB::Exception: Timeout exceeded. (TIMEOUT_EXCEEDED)",
            "Code: 202. DB::Exception: Too many simultaneous queries. (TOO_MANY_SIMULTANEOUS_QUERIES)",
            "Code: 60. DB::Exception: Table db.trades does not exist. (UNKNOWN_TABLE)",
            "Code: 16. DB::Exception: No such column price in table db.trades. (NO_SUCH_COLUMN_IN_TABLE)",
            "Code: 33. DB::Exception: Cannot read all data. (CANNOT_READ_ALL_DATA)",
            "Code: 1001. DB::Exception: chdb adapter internal error. (STD_EXCEPTION)",
            "Code: 0. DB::Exception: the adapter is shutting down. (ABORTED)",
            // 5xx from a proxy or load balancer, without any exception code.
            "502 Bad Gateway",
            "503 Service Unavailable",
            "500 Internal Server Error",
            "",
        ] {
            assert_eq!(
                classify_error(&bad_response(message)),
                ErrorClass::Retryable,
                "{message}"
            );
        }
        assert_eq!(classify_error(&Error::TimedOut), ErrorClass::Retryable);
        assert_eq!(
            classify_error(&Error::Network(Box::new(std::io::Error::other(
                "connection refused"
            )))),
            ErrorClass::Retryable
        );
        assert_eq!(
            classify_error(&Error::SchemaMismatch(
                "column price: Int64 vs String".into()
            )),
            ErrorClass::Retryable
        );
    }

    #[test]
    fn the_code_is_the_first_one_in_the_message() {
        assert_eq!(exception_code("Code: 469. DB::Exception: x"), Some(469));
        assert_eq!(exception_code("Code: 469"), Some(469));
        assert_eq!(
            exception_code("Code: 252. DB::Exception: while inserting: Code: 469. inner"),
            Some(252)
        );
        assert_eq!(
            exception_code("bad response: Code: 6. DB::Exception"),
            Some(6)
        );
        assert_eq!(exception_code("503 Service Unavailable"), None);
        assert_eq!(exception_code("Code: x"), None);
    }

    #[test]
    fn the_permanent_codes_are_listed_once_in_order() {
        assert!(
            PERMANENT_EXCEPTION_CODES
                .windows(2)
                .all(|pair| pair[0].0 < pair[1].0)
        );
    }
}

/// IMF-fixdate formatting (RFC 9110 §5.6.7), pure arithmetic on Unix seconds.
public enum HTTPDate {
    static let days = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]
    static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    public static func format(unixSeconds t: Int) -> String {
        let dayNumber = t >= 0 ? t / 86400 : (t - 86399) / 86400
        let secs = t - dayNumber * 86400
        let (y, m, d) = civil(fromDays: dayNumber)
        func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let weekday = days[((dayNumber % 7) + 7) % 7]
        return
            "\(weekday), \(two(d)) \(months[m - 1]) \(y) \(two(secs / 3600)):\(two(secs % 3600 / 60)):\(two(secs % 60)) GMT"
    }

    /// `2026-11-21T02:46:56` (UTC), for log lines.
    public static func isoSecond(unixSeconds t: Int) -> String {
        let day = t / 86400, secs = t % 86400
        let (y, m, d) = civil(fromDays: day)
        func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(y)-\(two(m))-\(two(d))T\(two(secs / 3600)):\(two(secs % 3600 / 60)):\(two(secs % 60))"
    }

    /// Days since 1970-01-01 → (year, month, day), Howard Hinnant's civil-from-days algorithm.
    static func civil(fromDays z0: Int) -> (Int, Int, Int) {
        let z = z0 + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }
}

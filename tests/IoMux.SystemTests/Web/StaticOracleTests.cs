using System.Net;
using System.Text;
using IoMux.Tests.Proxy;

namespace IoMux.Tests.Web;

/// <summary>`iomux serve` and nginx serving the same directory, asked the same Range, conditional, redirect and
/// method questions: nginx is the oracle. Every row asserts IoMux's status; where the row gives no reason to differ,
/// nginx must answer the same status and the same Content-Range, ETag, Last-Modified and Location path (both make
/// the entity tag from the modification time and size, in hex). The table is printed.</summary>
[NonParallelizable]
[Category("System")]
public sealed class StaticOracleTests
{
    private sealed record Row(string Name, string Request, int IoMux, string Why = "");

    private static IEnumerable<Row> Rows(string etag, string lastModified)
    {
        string later = DateTime.Parse(lastModified).ToUniversalTime().AddHours(1).ToString("r");
        string earlier = DateTime.Parse(lastModified).ToUniversalTime().AddHours(-1).ToString("r");
        yield return new("plain GET", "GET /a.txt", 200);
        yield return new("HEAD", "HEAD /a.txt", 200);
        yield return new("Range bytes=1-3", "GET /a.txt\r\nRange: bytes=1-3", 206);
        yield return new("Range bytes=2-", "GET /a.txt\r\nRange: bytes=2-", 206);
        yield return new("Range bytes=-2", "GET /a.txt\r\nRange: bytes=-2", 206);
        yield return new("Range bytes=1-100 (past the end)", "GET /a.txt\r\nRange: bytes=1-100", 206);
        yield return new("Range bytes=5- (unsatisfiable)", "GET /a.txt\r\nRange: bytes=5-", 416);
        yield return new("Range bytes=0-1,3-4", "GET /a.txt\r\nRange: bytes=0-1,3-4", 200,
            "RFC 9110 §14.2: a server MAY ignore Range; IoMux sends one 200 where nginx sends multipart/byteranges");
        yield return new("HEAD with Range", "HEAD /a.txt\r\nRange: bytes=1-3", 200,
            "RFC 9110 §14.2: range handling is defined for GET only and MUST be ignored otherwise; nginx applies it to HEAD");
        yield return new("If-None-Match: the ETag", $"GET /a.txt\r\nIf-None-Match: {etag}", 304);
        yield return new("If-None-Match: *", "GET /a.txt\r\nIf-None-Match: *", 304);
        yield return new("If-None-Match: another tag", "GET /a.txt\r\nIf-None-Match: \"other\"", 200);
        yield return new("If-Modified-Since: Last-Modified", $"GET /a.txt\r\nIf-Modified-Since: {lastModified}", 304);
        yield return new("If-Modified-Since: an hour later", $"GET /a.txt\r\nIf-Modified-Since: {later}", 304,
            "RFC 9110 §13.1.3: not modified since a later date is 304; nginx compares for equality by default (if_modified_since exact)");
        yield return new("If-Modified-Since: an hour earlier", $"GET /a.txt\r\nIf-Modified-Since: {earlier}", 200);
        yield return new("If-None-Match another tag, If-Modified-Since matching", $"GET /a.txt\r\nIf-None-Match: \"other\"\r\nIf-Modified-Since: {lastModified}", 200);
        yield return new("If-None-Match the ETag, If-Modified-Since earlier", $"GET /a.txt\r\nIf-None-Match: {etag}\r\nIf-Modified-Since: {earlier}", 304,
            "RFC 9110 §13.2.2: If-None-Match takes precedence and If-Modified-Since is then ignored; nginx requires both to match");
        yield return new("If-Range: the ETag", $"GET /a.txt\r\nRange: bytes=0-1\r\nIf-Range: {etag}", 206);
        yield return new("If-Range: a stale tag", "GET /a.txt\r\nRange: bytes=0-1\r\nIf-Range: \"stale\"", 200);
        yield return new("If-Range: Last-Modified", $"GET /a.txt\r\nRange: bytes=0-1\r\nIf-Range: {lastModified}", 206);
        yield return new("a directory without its slash", "GET /sub", 301);
        yield return new("a directory with its slash", "GET /sub/", 200);
        yield return new("POST with a body", "POST /a.txt\r\nContent-Length: 5", 405);
        yield return new("DELETE", "DELETE /a.txt", 405);
    }

    [Test, CancelAfter(120_000)]
    public async Task RangeConditionalRedirectAndMethodAnswersMatchNginx(CancellationToken cancellation)
    {
        var nginxBinary = NginxServer.TryInstall(out string whyNot);
        if (nginxBinary is null)
            Assert.Ignore(whyNot);
        var root = Directory.CreateTempSubdirectory("iomux-oracle-").FullName;
        File.WriteAllText(Path.Combine(root, "a.txt"), "alpha");
        File.SetLastWriteTimeUtc(Path.Combine(root, "a.txt"), new DateTime(2024, 5, 17, 8, 30, 0, DateTimeKind.Utc));
        Directory.CreateDirectory(Path.Combine(root, "sub"));
        File.WriteAllText(Path.Combine(root, "sub", "index.html"), "<p>sub</p>");
        // nginx's workers run as this user (root here) or nobody: let them read the directory either way.
        foreach (var path in new[] { root, Path.Combine(root, "sub") })
            File.SetUnixFileMode(path, (UnixFileMode)0b111_101_101);
        using var nginx = NginxServer.TryStart(nginxBinary, root, out whyNot);
        try
        {
            if (nginx is null)
                Assert.Fail(whyNot);
            await ServerCommandTests.Run(["serve", root], port => Task.Run(() => Compare(port, nginx!.Port), cancellation), threads: 1, cancellation: cancellation);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    private static void Compare(int ioMuxPort, int nginxPort)
    {
        var (_, first, _) = Ask(ioMuxPort, "HEAD /a.txt");
        string etag = RawHttp.Header(first, "ETag")!, lastModified = RawHttp.Header(first, "Last-Modified")!;
        Assert.That(etag, Is.EqualTo($"\"{new DateTimeOffset(2024, 5, 17, 8, 30, 0, TimeSpan.Zero).ToUnixTimeSeconds():x}-5\""));
        var failures = new List<string>();
        var table = new StringBuilder("| request | IoMux | nginx | why they differ |\n|---|---|---|---|\n");
        foreach (var row in Rows(etag, lastModified))
        {
            var ioMux = Ask(ioMuxPort, row.Request);
            var reference = Ask(nginxPort, row.Request);
            table.AppendLine($"| {row.Name} | {ioMux.Status} | {reference.Status} | {row.Why} |");
            if (ioMux.Status != row.IoMux)
                failures.Add($"{row.Name}: IoMux answered {ioMux.Status}, expected {row.IoMux}");
            if (row.Why != "")
                continue;
            if (reference.Status != ioMux.Status)
                failures.Add($"{row.Name}: nginx answered {reference.Status}, IoMux {ioMux.Status}, and the row says no reason");
            foreach (var name in new[] { "Content-Range", "ETag", "Last-Modified", "Content-Length" })
            {
                if (name == "Content-Length" && ioMux.Status is not (200 or 206))
                    continue; // error and redirect bodies are each server's own text
                string? mine = RawHttp.Header(ioMux.Headers, name), theirs = RawHttp.Header(reference.Headers, name);
                if (mine != theirs)
                    failures.Add($"{row.Name}: {name} is '{mine}' from IoMux, '{theirs}' from nginx");
            }
            if (ioMux.Status == 301)
            {
                // nginx writes an absolute URI; IoMux a relative one (RFC 9110 §10.2.2 allows both): the paths agree.
                string mine = RawHttp.Header(ioMux.Headers, "Location")!, theirs = new Uri(RawHttp.Header(reference.Headers, "Location")!).PathAndQuery;
                if (mine != theirs)
                    failures.Add($"{row.Name}: Location '{mine}' from IoMux, '{theirs}' from nginx");
            }
            if (ioMux.Status == 206 && !ioMux.Body.SequenceEqual(reference.Body))
                failures.Add($"{row.Name}: the partial bodies differ");
        }
        TestContext.Out.WriteLine(table.ToString());
        Assert.That(failures, Is.Empty);
    }

    /// <summary>A row's request: its first line is "METHOD /target", the others header fields; a POST carries 5 bytes.</summary>
    private static (int Status, string Headers, byte[] Body) Ask(int port, string request)
    {
        var lines = request.Split("\r\n");
        var text = $"{lines[0]} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{string.Concat(lines.Skip(1).Select(l => l + "\r\n"))}\r\n"
            + (request.StartsWith("POST", StringComparison.Ordinal) ? "hello" : "");
        return RawHttp.Exchange(new IPEndPoint(IPAddress.Loopback, port), text);
    }
}

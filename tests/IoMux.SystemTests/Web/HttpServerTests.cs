using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using IoMux.Web.Http;

namespace IoMux.Tests.Web;

/// <summary>The static file server end to end on loopback, on every backend that runs here: what it serves,
/// what it refuses (and with which status), keep-alive, pipelining, and its timeouts.</summary>
[Category("System")]
[TestFixture("epoll")]
[TestFixture("poll")]
[NonParallelizable]
public sealed class HttpServerTests(string backend)
{
    private string _root = null!, _outside = null!;
    private HttpServer _server = null!;
    private byte[] _big = null!;

    [OneTimeSetUp]
    public void Start()
    {
        _root = Directory.CreateTempSubdirectory("iomux-www-").FullName;
        _outside = Directory.CreateTempSubdirectory("iomux-outside-").FullName;
        File.WriteAllText(Path.Combine(_root, "index.html"), "<h1>home</h1>");
        File.WriteAllText(Path.Combine(_root, "a.txt"), "alpha");
        Directory.CreateDirectory(Path.Combine(_root, "sub"));
        Directory.CreateDirectory(Path.Combine(_root, "dir with?odd#chars\\"));
        File.WriteAllText(Path.Combine(_root, "sub", "index.html"), "sub index");
        _big = new byte[1 << 20];
        new Random(9).NextBytes(_big);
        File.WriteAllBytes(Path.Combine(_root, "big.bin"), _big);
        File.WriteAllText(Path.Combine(_outside, "secret.txt"), "secret");
        File.CreateSymbolicLink(Path.Combine(_root, "leak.txt"), Path.Combine(_outside, "secret.txt"));
        File.CreateSymbolicLink(Path.Combine(_root, "alias.txt"), Path.Combine(_root, "a.txt"));
        Directory.CreateSymbolicLink(Path.Combine(_root, "outdir"), _outside);
        File.CreateSymbolicLink(Path.Combine(_root, "relative-leak.txt"), Path.Combine("..", Path.GetFileName(_outside), "secret.txt"));
        File.CreateSymbolicLink(Path.Combine(_root, "sub", "relative-alias.txt"), Path.Combine("..", "a.txt"));
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", Path.Combine(_root, "fifo"))!)
            Assert.That(mkfifo.WaitForExit(10_000), Is.True, "mkfifo did not finish");
        _server = HttpServer.StaticFiles(new IPEndPoint(IPAddress.Loopback, 0), _root,
            new HttpServerOptions { ThreadCount = 2, HeaderTimeout = TimeSpan.FromSeconds(1), KeepAliveTimeout = TimeSpan.FromSeconds(2) }, backend);
    }

    [OneTimeTearDown]
    public void Stop()
    {
        _server.Dispose();
        Directory.Delete(_root, recursive: true);
        Directory.Delete(_outside, recursive: true);
    }

    [TestCase("/a.txt", 200, "alpha")]
    [TestCase("/", 200, "<h1>home</h1>")]
    [TestCase("/sub/", 200, "sub index")]
    [TestCase("/sub/.", 200, "sub index")]
    [TestCase("/alias.txt", 200, "alpha")]
    [TestCase("/a.txt?x=1", 200, "alpha")]
    [TestCase("/%61.txt", 200, "alpha")]
    [TestCase("/sub/../a.txt", 200, "alpha")]
    [TestCase("/sub/relative-alias.txt", 200, "alpha")]
    [TestCase("/missing", 404, null)]
    [TestCase("/relative-leak.txt", 404, null)]
    [TestCase("/fifo", 404, null)]
    [TestCase("/leak.txt", 404, null)]
    [TestCase("/outdir/secret.txt", 404, null)]
    [TestCase("/../etc/passwd", 400, null)]
    [TestCase("/%2e%2e/%2e%2e/etc/passwd", 400, null)]
    [TestCase("/sub/%2E%2E/%2E%2E/etc/passwd", 400, null)]
    [TestCase("/..%2fetc%2fpasswd", 400, null)]
    [TestCase("/a.txt%00.html", 400, null)]
    [TestCase("/%zz", 400, null)]
    public void GetAnswers(string target, int status, string? body)
    {
        var (code, headers, content) = Exchange($"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        Assert.That(code, Is.EqualTo(status), headers);
        if (body is not null)
            Assert.That(Encoding.UTF8.GetString(content), Is.EqualTo(body));
        Assert.That(Encoding.UTF8.GetString(content), Does.Not.Contain("secret"));
    }

    [Test]
    public void HeadSendsTheHeadersOfGetWithoutTheBody()
    {
        var (code, headers, content) = Exchange("HEAD /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        Assert.That(code, Is.EqualTo(200));
        Assert.That(headers, Does.Contain($"Content-Length: {_big.Length}"));
        Assert.That(content, Is.Empty);
    }

    [Test]
    public void OtherMethodsGet405WithAllow()
    {
        var (code, headers, _) = Exchange("DELETE /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        Assert.That(code, Is.EqualTo(405));
        Assert.That(headers, Does.Contain("Allow: GET, HEAD"));
    }

    [TestCase("GARBAGE\r\n\r\n", 400)]
    [TestCase("GET /a.txt\r\n\r\n", 400)]
    [TestCase("GET a.txt HTTP/1.1\r\nHost: t\r\n\r\n", 400)]
    [TestCase("GET /a.txt HTTP/1.1\r\n\r\n", 400)]
    [TestCase("GET /a.txt HTTP/1.1\r\nHost : t\r\n\r\n", 400)]
    [TestCase("GET /a.txt HTTP/2.0\r\nHost: t\r\n\r\n", 505)]
    [TestCase("GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello", 413)]
    [TestCase("POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello", 405)]
    [TestCase("POST /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 405)]
    [TestCase("GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n", 413)]
    public void MalformedRequestsGetTheirStatusAndTheConnectionCloses(string request, int status)
    {
        var (code, headers, _) = Exchange(request);
        Assert.That(code, Is.EqualTo(status));
        Assert.That(headers, Does.Contain("Connection: close"));
    }

    [Test]
    public void OversizedHeadersGet431AndAnOversizedRequestLine414()
    {
        var header = new string('x', 20_000);
        Assert.That(Exchange($"GET /a.txt HTTP/1.1\r\nHost: t\r\nX-Big: {header}\r\n\r\n").Status, Is.EqualTo(431));
        Assert.That(Exchange($"GET /{header} HTTP/1.1\r\nHost: t\r\n\r\n").Status, Is.EqualTo(414));
    }

    [Test, CancelAfter(30_000)]
    public async Task AMebibyteFileArrivesIntactOverKeepAlive(CancellationToken cancellation)
    {
        using var http = new HttpClient { BaseAddress = new Uri($"http://{_server.Endpoint}/") };
        for (int i = 0; i < 3; i++)
        {
            var bytes = await http.GetByteArrayAsync("big.bin", cancellation);
            Assert.That(SHA256.HashData(bytes), Is.EqualTo(SHA256.HashData(_big)));
        }
    }

    [Test]
    public void PipelinedRequestsAreAnsweredInOrder()
    {
        using var socket = Connect();
        socket.Send(Encoding.ASCII.GetBytes("GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /sub/ HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
        var all = Encoding.UTF8.GetString(ReadToEnd(socket));
        int first = all.IndexOf("alpha", StringComparison.Ordinal), second = all.IndexOf("sub index", StringComparison.Ordinal);
        Assert.That(first, Is.GreaterThan(0));
        Assert.That(second, Is.GreaterThan(first));
    }

    [Test] // bounded by RawHttp's deadline
    public void ASlowHeadIsAnswered408AfterTheHeaderTimeout()
    {
        using var socket = Connect();
        socket.Send(Encoding.ASCII.GetBytes("GET /a.txt HTTP/1.1\r\nHo")); // and nothing more: slowloris
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var response = Encoding.ASCII.GetString(ReadToEnd(socket));
        Assert.That(response, Does.StartWith("HTTP/1.1 408"));
        Assert.That(clock.Elapsed, Is.GreaterThan(TimeSpan.FromMilliseconds(700)).And.LessThan(TimeSpan.FromSeconds(10)));
    }

    [Test] // bounded by the receive timeouts
    public void AnIdleKeptAliveConnectionIsClosedAfterTheIdleTimeout()
    {
        using var socket = Connect();
        socket.Send(Encoding.ASCII.GetBytes("GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n"));
        var buffer = new byte[4096];
        Assert.That(socket.Receive(buffer), Is.GreaterThan(0));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        socket.ReceiveTimeout = 10_000;
        Assert.That(socket.Receive(buffer), Is.EqualTo(0), "the idle connection was not closed");
        Assert.That(clock.Elapsed, Is.GreaterThan(TimeSpan.FromSeconds(1.5)));
    }

    /// <summary>RFC 9110 §15.5.6 before §15.5.14: a method the file does not support is refused as such, whatever
    /// content it brings (it was 413 while the body was looked at first).</summary>
    [Test]
    public void APostWithContentGets405WithAllowBefore413()
    {
        var (code, headers, _) = Exchange("POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + new string('x', 1000));
        Assert.That(code, Is.EqualTo(405));
        Assert.That(headers, Does.Contain("Allow: GET, HEAD"));
    }

    [TestCase("/sub", "/sub/")]
    [TestCase("/sub?x=1", "/sub/?x=1")]
    [TestCase("/sub/../sub", "/sub/")]
    [TestCase("//evil.example/..%2fsub", "/sub/")]
    [TestCase("/\\evil.example/../sub", "/sub/")]
    [TestCase("/%5Cevil.example/../sub", "/sub/")]
    [TestCase("/./sub", "/sub/")]
    [TestCase("/dir%20with%3Fodd%23chars%5C", "/dir%20with%3Fodd%23chars%5C/")]
    public void ADirectoryWithoutItsSlashIsRedirectedToIt(string target, string location)
    {
        var (code, headers, _) = Exchange($"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        Assert.That(code, Is.EqualTo(301), headers);
        Assert.That(headers + "\r\n", Does.Contain($"\r\nLocation: {location}\r\n"));
        // Issue 19: the raw target was echoed, and "//evil.example/..%2fsub/" is a network-path reference that a
        // browser follows to evil.example (and "/\\" reads as "//" to a browser). Resolved as a browser resolves
        // it, the Location must stay on this server.
        var resolved = new Uri(new Uri("http://t/"), RawHttp.Header(headers, "Location")!.Replace('\\', '/'));
        Assert.That(resolved.Host, Is.EqualTo("t"), "the redirect leaves this server");
        var (headCode, headHeaders, headBody) = Exchange($"HEAD {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        Assert.That(headCode, Is.EqualTo(301));
        Assert.That(WithoutDate(headHeaders), Is.EqualTo(WithoutDate(headers)), "HEAD answers GET's head");
        Assert.That(headBody, Is.Empty);
    }

    [TestCase("bytes=0-0", 206, "bytes 0-0/5", "a")]
    [TestCase("bytes=1-3", 206, "bytes 1-3/5", "lph")]
    [TestCase("bytes=2-", 206, "bytes 2-4/5", "pha")]
    [TestCase("bytes=-2", 206, "bytes 3-4/5", "ha")]
    [TestCase("bytes=-10", 206, "bytes 0-4/5", "alpha")]
    [TestCase("bytes=1-100", 206, "bytes 1-4/5", "lpha")]
    [TestCase("BYTES = 1-1", 206, "bytes 1-1/5", "l")]
    [TestCase("bytes=5-", 416, "bytes */5", null)]
    [TestCase("bytes=9-12", 416, "bytes */5", null)]
    [TestCase("bytes=-0", 416, "bytes */5", null)]
    [TestCase("bytes=0-1,3-4", 200, null, "alpha")]
    [TestCase("bytes=3-1", 200, null, "alpha")]
    [TestCase("bytes=x-1", 200, null, "alpha")]
    [TestCase("items=0-1", 200, null, "alpha")]
    public void ASingleByteRangeIsAnswered206(string range, int status, string? contentRange, string? body)
    {
        var (code, headers, content) = Exchange($"GET /a.txt HTTP/1.1\r\nHost: t\r\nRange: {range}\r\nConnection: close\r\n\r\n");
        Assert.That(code, Is.EqualTo(status), headers);
        if (contentRange is null)
            Assert.That(headers, Does.Not.Contain("Content-Range"));
        else
            Assert.That(headers + "\r\n", Does.Contain($"\r\nContent-Range: {contentRange}\r\n"));
        if (body is not null)
            Assert.That(Encoding.UTF8.GetString(content), Is.EqualTo(body));
        Assert.That(headers + "\r\n", Does.Contain($"\r\nContent-Length: {content.Length}\r\n"));
    }

    [Test]
    public void ARangeInTheMiddleOfALargeFileArrivesIntact()
    {
        var (code, headers, content) = Exchange("GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=1000-700999\r\nConnection: close\r\n\r\n");
        Assert.That(code, Is.EqualTo(206));
        Assert.That(headers, Does.Contain($"Content-Range: bytes 1000-700999/{_big.Length}"));
        Assert.That(SHA256.HashData(content), Is.EqualTo(SHA256.HashData(_big.AsSpan(1000, 700_000))));
    }

    [Test]
    public void HeadIgnoresRangeAndAnswersGetsHead()
    {
        var (code, headers, content) = Exchange("HEAD /a.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=1-2\r\nConnection: close\r\n\r\n");
        var (_, getHeaders, _) = Exchange("GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        Assert.That(code, Is.EqualTo(200), "RFC 9110 §14.2: range semantics are defined for GET only");
        Assert.That(WithoutDate(headers), Is.EqualTo(WithoutDate(getHeaders)));
        Assert.That(content, Is.Empty);
    }

    [Test]
    public void AMissingFileAnsweredToHeadHasNoBodySoTheConnectionStaysInStep()
    {
        using var socket = Connect();
        socket.Send(Encoding.ASCII.GetBytes("HEAD /missing HTTP/1.1\r\nHost: t\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
        var all = Encoding.ASCII.GetString(ReadToEnd(socket));
        Assert.That(all, Does.StartWith("HTTP/1.1 404"));
        int second = all.IndexOf("HTTP/1.1 200", StringComparison.Ordinal);
        Assert.That(second, Is.GreaterThan(0), all);
        Assert.That(all[..second], Does.EndWith("\r\n\r\n"), "nothing after the 404's head");
        Assert.That(all, Does.EndWith("alpha"));
    }

    [Test]
    public void FilesCarryValidatorsAndAConditionalGetIsAnswered304()
    {
        var (code, headers, _) = Exchange("GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        Assert.That(code, Is.EqualTo(200));
        var modified = File.GetLastWriteTimeUtc(Path.Combine(_root, "a.txt"));
        long seconds = new DateTimeOffset(modified).ToUnixTimeSeconds();
        string etag = $"\"{seconds:x}-5\"", lastModified = DateTime.UnixEpoch.AddSeconds(seconds).ToString("r");
        Assert.That(Header(headers, "ETag"), Is.EqualTo(etag), "nginx's form: mtime-size in hex");
        Assert.That(Header(headers, "Last-Modified"), Is.EqualTo(lastModified));
        Assert.That(Header(headers, "Accept-Ranges"), Is.EqualTo("bytes"));

        string later = DateTime.UnixEpoch.AddSeconds(seconds + 3600).ToString("r"), earlier = DateTime.UnixEpoch.AddSeconds(seconds - 1).ToString("r");
        foreach (var (conditions, expected) in new[]
        {
            ($"If-None-Match: {etag}", 304),
            ($"If-None-Match: \"x\", W/{etag}", 304), // weak comparison (RFC 9110 §13.1.2)
            ("If-None-Match: *", 304),
            ("If-None-Match: \"other\"", 200),
            ($"If-Modified-Since: {lastModified}", 304),
            ($"If-Modified-Since: {later}", 304),
            ($"If-Modified-Since: {earlier}", 200),
            ("If-Modified-Since: yesterday", 200), // not a date: ignored (RFC 9110 §13.1.3)
            ($"If-None-Match: \"other\"\r\nIf-Modified-Since: {later}", 200), // If-None-Match takes precedence (§13.2.2)
        })
        {
            foreach (var method in new[] { "GET", "HEAD" })
            {
                var (status, answer, body) = Exchange($"{method} /a.txt HTTP/1.1\r\nHost: t\r\n{conditions}\r\nConnection: close\r\n\r\n");
                Assert.That(status, Is.EqualTo(expected), $"{method} with {conditions}");
                if (expected == 304)
                {
                    Assert.That(body, Is.Empty);
                    Assert.That(Header(answer, "ETag"), Is.EqualTo(etag));
                    Assert.That(answer, Does.Not.Contain("Content-Length"));
                }
            }
        }
    }

    [Test]
    public void IfRangeKeepsTheRangeOnlyForTheCurrentFile()
    {
        var (_, headers, _) = Exchange("HEAD /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        string etag = Header(headers, "ETag")!, lastModified = Header(headers, "Last-Modified")!;
        foreach (var (ifRange, expected) in new[] { (etag, 206), ("\"stale\"", 200), ($"W/{etag}", 200), (lastModified, 206), ("Mon, 01 Jan 2001 00:00:00 GMT", 200) })
        {
            var (status, _, body) = Exchange($"GET /a.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-1\r\nIf-Range: {ifRange}\r\nConnection: close\r\n\r\n");
            Assert.That(status, Is.EqualTo(expected), ifRange);
            Assert.That(Encoding.ASCII.GetString(body), Is.EqualTo(expected == 206 ? "al" : "alpha"));
        }
    }

    private static string? Header(string headers, string name) => RawHttp.Header(headers, name);

    private static string WithoutDate(string headers) =>
        string.Join("\r\n", headers.Split("\r\n").Where(l => !l.StartsWith("Date: ", StringComparison.Ordinal)));

    private Socket Connect() => RawHttp.Connect(_server.Endpoint);

    private static byte[] ReadToEnd(Socket socket) => RawHttp.ReadToEnd(socket);

    private (int Status, string Headers, byte[] Body) Exchange(string request) => RawHttp.Exchange(_server.Endpoint, request);
}

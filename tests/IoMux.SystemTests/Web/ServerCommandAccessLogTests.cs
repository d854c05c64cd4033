namespace IoMux.Tests.Web;

/// <summary>`iomux serve --access-log`: one line per response on stderr, none without the flag.</summary>
public sealed partial class ServerCommandTests
{
    [TestCase(true)]
    [TestCase(false)]
    [CancelAfter(60_000)]
    public async Task IomuxServeWritesAnAccessLogOnlyWhenAsked(bool asked, CancellationToken cancellation)
    {
        var root = Directory.CreateTempSubdirectory("iomux-access-log-");
        File.WriteAllText(Path.Combine(root.FullName, "page.txt"), "logged");
        string[] command = asked ? ["serve", root.FullName, "--access-log"] : ["serve", root.FullName];
        await Run(command, async port =>
        {
            using var http = new HttpClient();
            Assert.That(await http.GetStringAsync($"http://127.0.0.1:{port}/page.txt"), Is.EqualTo("logged"));
            using var missing = await http.GetAsync($"http://127.0.0.1:{port}/missing");
            Assert.That((int)missing.StatusCode, Is.EqualTo(404));
            // The line is written once the response is in the socket, possibly just after the client has it.
            bool logged = Proxy.ProxyProcess.Eventually(() =>
            {
                lock (s_log)
                    return s_log.ToString().Contains("iomux serve: GET /missing 404 ", StringComparison.Ordinal);
            }, TimeSpan.FromSeconds(asked ? 10 : 1));
            Assert.That(logged, Is.EqualTo(asked));
            lock (s_log)
                Assert.That(s_log.ToString(), asked ? Does.Match(@"iomux serve: GET /page\.txt 200 \d+ \d+\.\d+ ms") : Does.Not.Contain("GET /page.txt"));
        }, cancellation: cancellation);
        root.Delete(recursive: true); // left behind in /tmp when the exercise fails, for a look
    }
}

using System.Text;
using IoMux.Web.Http;

namespace IoMux.Tests.Web;

/// <summary>The types a browser checks before it uses a file. Each expected value is typed from its registration,
/// not read from the table under test: RFC 9239 §6 (text/javascript for .js and .mjs: a module script with another
/// type is refused), the WebAssembly JS API (instantiateStreaming refuses anything but application/wasm), RFC 8081
/// (font/woff, font/woff2, font/ttf, font/otf), and Debian 12's nginx 1.22 mime.types for the rest.</summary>
public sealed class ContentTypeTests
{
    [TestCase("app.mjs", "text/javascript")]
    [TestCase("app.js", "text/javascript")]
    [TestCase("lib.wasm", "application/wasm")]
    [TestCase("font.woff2", "font/woff2")]
    [TestCase("font.woff", "font/woff")]
    [TestCase("font.ttf", "font/ttf")]
    [TestCase("font.otf", "font/otf")]
    [TestCase("favicon.ico", "image/x-icon")]
    [TestCase("photo.webp", "image/webp")]
    [TestCase("photo.avif", "image/avif")]
    [TestCase("anim.gif", "image/gif")]
    [TestCase("photo.JPEG", "image/jpeg")]
    [TestCase("app.js.map", "application/json")]
    [TestCase("site.webmanifest", "application/manifest+json")]
    [TestCase("clip.mp4", "video/mp4")]
    [TestCase("clip.webm", "video/webm")]
    [TestCase("song.mp3", "audio/mpeg")]
    [TestCase("doc.pdf", "application/pdf")]
    [TestCase("subs.vtt", "text/vtt; charset=utf-8")]
    [TestCase("index.html", "text/html; charset=utf-8")]
    [TestCase("data.bin", "application/octet-stream")]
    [TestCase("no-extension", "application/octet-stream")]
    [TestCase("dir.js/file", "application/octet-stream")]
    public void AFileIsServedWithTheTypeItsExtensionIsRegisteredFor(string path, string type) =>
        Assert.That(Encoding.ASCII.GetString(ContentTypes.For(Encoding.ASCII.GetBytes(path))), Is.EqualTo(type));
}

// Progressive enhancement: the links to the windows that decided seek the player in place
// (without this script they open the audio at that second).
document.addEventListener("click", function (event) {
  var link = event.target.closest("a.seek");
  var player = document.getElementById("player");
  if (!link || !player) return;
  event.preventDefault();
  player.currentTime = parseFloat(link.dataset.seek);
  player.play();
});
